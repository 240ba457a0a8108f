"""The `avlora` command line."""

import argparse
import sys
from pathlib import Path
from typing import Literal, get_args, get_origin

import grpc
from google.protobuf import json_format

from avlora.client import Endpoints, as_url
from avlora.params import AV2AVParams, V2AParams
from avlora.v1 import jobs_pb2, params_pb2, stages_pb2

SCHEMAS = {"v2a": V2AParams, "av2av": AV2AVParams}
SHORT_FLAGS = {"number_of_steps": "--steps"}
TERMINAL = {jobs_pb2.SUCCEEDED, jobs_pb2.FAILED, jobs_pb2.CANCELLED}


def state_name(state: int) -> str:
    return jobs_pb2.JobState.Name(state)


def _parameter_flags(parser: argparse.ArgumentParser, mode: str) -> None:
    """One flag per seed parameter, from the schema (defaults and ranges are checked server-side)."""
    for name, field in SCHEMAS[mode].model_fields.items():
        if name in ("mode", "training_data_url", "validation"):
            continue
        flags = [f"--{name.replace('_', '-')}"] + ([SHORT_FLAGS[name]] if name in SHORT_FLAGS else [])
        kind = field.annotation
        if get_origin(kind) is Literal:  # e.g. rank: Literal[8, 16, ...] -> int; resolution -> str
            kind = type(get_args(kind)[0])
        if kind is bool:
            parser.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, default=None)
        else:
            parser.add_argument(*flags, dest=name, type=kind if kind in (int, float) else str, default=None,
                                help=f"default: {field.default}")
    item = "PROMPT|VIDEO" if mode == "v2a" else "PROMPT|REFERENCE_VIDEO[|REFERENCE_AUDIO]"
    parser.add_argument("--validation", action="append", default=[], metavar=item,
                        help="a validation sample (at most 2); local files are uploaded")


def build_params(args, endpoints: Endpoints) -> params_pb2.JobParams:
    values = {name: getattr(args, name) for name in SCHEMAS[args.mode].model_fields
              if name not in ("mode", "validation") and getattr(args, name, None) is not None}
    values["training_data_url"] = as_url(endpoints, args.data)
    validation = []
    for entry in args.validation:
        prompt, *media = entry.split("|")
        if not media:
            raise SystemExit(f"--validation {entry!r}: expected {'PROMPT|VIDEO' if args.mode == 'v2a' else 'PROMPT|REFERENCE_VIDEO'}")
        if args.mode == "v2a":
            validation.append({"prompt": prompt, "video_url": as_url(endpoints, media[0])})
        else:
            item = {"prompt": prompt, "reference_video_url": as_url(endpoints, media[0])}
            if len(media) > 1:
                item["reference_audio_url"] = as_url(endpoints, media[1])
            validation.append(item)
    values["validation"] = validation
    inner = params_pb2.V2AParams() if args.mode == "v2a" else params_pb2.AV2AVParams()
    json_format.ParseDict(values, inner)
    return params_pb2.JobParams(**{args.mode: inner})


def _call(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except grpc.RpcError as error:
        raise SystemExit(f"error: {error.code().name}: {error.details()}") from None


def job_json(job: jobs_pb2.Job) -> str:
    return json_format.MessageToJson(job, preserving_proto_field_name=True)


def describe(job: jobs_pb2.Job, endpoints: Endpoints | None = None) -> str:
    lines = [f"job {job.id} ({job.mode}): {state_name(job.state)}"]
    progress = job.progress
    if progress.stage:
        lines.append(f"  stage {progress.stage}: {progress.done}/{progress.total} {progress.unit} {progress.message}".rstrip())
    if progress.validation_loss or progress.baseline_validation_loss:
        lines.append(f"  validation loss {progress.validation_loss:.4f} (untrained {progress.baseline_validation_loss:.4f})")
    if job.error:
        lines.append(f"  error: {job.error}")
    for name, value in json_format.MessageToDict(job.outputs, preserving_proto_field_name=True).items():
        lines.append(f"  {name}: {endpoints.local_path(value) if endpoints else value}")
    lines.append(f"  billed {job.billed_units} units x {job.unit_price} = {job.cost:.4f}")
    return "\n".join(lines)


def cmd_submit(args) -> int:
    endpoints = Endpoints.find(args.data_dir)
    request = jobs_pb2.CreateJobRequest(params=build_params(args, endpoints), request_id=args.request_id or "")
    job = _call(endpoints.jobs().CreateJob, request, metadata=endpoints.auth, timeout=60)
    print(job_json(job) if args.json else job.id)
    return 0


def cmd_inspect(args) -> int:
    """Every dataset check, without encoding or training: free, and nothing is recorded."""
    endpoints = Endpoints.find(args.data_dir)
    request = stages_pb2.InspectDatasetRequest(params=build_params(args, endpoints))
    report = _call(endpoints.preprocess_stub().InspectDataset, request, metadata=endpoints.auth, timeout=3600)
    if args.json:
        print(json_format.MessageToJson(report, preserving_proto_field_name=True))
        return 0 if report.ok else 1
    for clip in report.clips:
        verdict = "ok     " if clip.accepted else "skipped"
        print(f"{verdict} {clip.name}  {clip.native_frames} frames @ {clip.native_fps:.3g} fps, "
              f"{clip.width}x{clip.height}  {clip.reason or clip.caption!r}")
    for ignored in report.ignored:
        print(f"ignored {ignored.name}: {ignored.reason}")
    for error in report.errors:
        print(f"error: {error}")
    print("dataset OK" if report.ok else "dataset REJECTED")
    return 0 if report.ok else 1


def watch(endpoints: Endpoints, job_id: str, quiet: bool = False) -> jobs_pb2.Job:
    """Follows a job to its end with a progress bar per stage; returns the final job."""
    from tqdm import tqdm
    bar, stage, job = None, None, None
    try:
        for job in endpoints.jobs().WatchJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=endpoints.auth):
            progress = job.progress
            key = (progress.stage or state_name(job.state), progress.unit)
            if not quiet and key != stage and progress.total:
                if bar:
                    bar.close()
                bar, stage = tqdm(total=progress.total, desc=key[0], unit=f" {progress.unit}" if progress.unit else "it"), key
            if bar and progress.total:
                bar.n = min(progress.done, bar.total)
                postfix = {"loss": f"{progress.loss:.4f}"} if progress.loss else {}
                if progress.validation_loss:
                    postfix["val"] = f"{progress.validation_loss:.4f}"
                bar.set_postfix(postfix, refresh=False)
                bar.refresh()
            elif not quiet and progress.message:
                tqdm.write(f"[{state_name(job.state)}] {progress.message}")
    except grpc.RpcError as error:
        raise SystemExit(f"error: {error.code().name}: {error.details()}") from None
    finally:
        if bar:
            bar.close()
    return job


def cmd_watch(args) -> int:
    endpoints = Endpoints.find(args.data_dir)
    job = watch(endpoints, args.job)
    print(describe(job, endpoints))
    return 0 if job.state == jobs_pb2.SUCCEEDED else 1


def cmd_status(args) -> int:
    endpoints = Endpoints.find(args.data_dir)
    job = _call(endpoints.jobs().GetJob, jobs_pb2.GetJobRequest(job_id=args.job), metadata=endpoints.auth, timeout=30)
    print(job_json(job) if args.json else describe(job, endpoints))
    return 0


def cmd_list(args) -> int:
    endpoints = Endpoints.find(args.data_dir)
    request = jobs_pb2.ListJobsRequest(page_size=args.limit, mode=args.mode or "",
                                       state=jobs_pb2.JobState.Value(args.state) if args.state else 0)
    reply = _call(endpoints.jobs().ListJobs, request, metadata=endpoints.auth, timeout=30)
    for job in reply.jobs:
        print(f"{job.id}  {job.mode:5}  {state_name(job.state):13}  {job.created_at.ToDatetime():%Y-%m-%d %H:%M:%S}")
    return 0


def cmd_cancel(args) -> int:
    endpoints = Endpoints.find(args.data_dir)
    job = _call(endpoints.jobs().CancelJob, jobs_pb2.CancelJobRequest(job_id=args.job), metadata=endpoints.auth, timeout=30)
    print(f"job {job.id}: {state_name(job.state)}")
    return 0


def cmd_usage(args) -> int:
    endpoints = Endpoints.find(args.data_dir)
    usage = _call(endpoints.jobs().GetUsage, jobs_pb2.GetUsageRequest(job_id=args.job or ""),
                  metadata=endpoints.auth, timeout=30)
    if args.json:
        print(json_format.MessageToJson(usage, preserving_proto_field_name=True))
        return 0
    for line in usage.lines:
        print(f"{line.job_id}  {line.mode:5}  {state_name(line.state):10}  {line.units:6} units  {line.cost:.4f}")
    print(f"tenant {usage.tenant}: {usage.total_units} units, {usage.total_cost:.4f}")
    return 0


def cmd_up(args) -> int:
    from avlora.stack import run_stack
    return run_stack(Path(args.data_dir or ".state"))


def cmd_demo_data(args) -> int:
    from avlora.demo_data import write_demo_dataset
    print(write_demo_dataset(args.mode, Path(args.out)))
    return 0


def cmd_model(args) -> int:
    from avlora.model.tiny import write_tiny_model
    print(write_tiny_model(Path(args.dir)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="avlora", description="LoRA training for LTX-2.3 (v2a, av2av)")
    parser.add_argument("--data-dir", default=None, help="the stack's directory (default .state)")
    # --data-dir is also accepted after the command (`avlora up --data-dir DIR`).
    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument("--data-dir", default=argparse.SUPPRESS, help="the stack's directory (default .state)")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", parents=[data_dir], help="run the whole stack on this machine until Ctrl-C")
    up.set_defaults(run=cmd_up)
    for command, function, text in (("submit", cmd_submit, "submit a training job"),
                                    ("inspect", cmd_inspect, "check a dataset without training (free)")):
        modes = commands.add_parser(command, parents=[data_dir], help=text).add_subparsers(dest="mode", required=True)
        for mode in SCHEMAS:
            sub = modes.add_parser(mode, parents=[data_dir], help=f"{command} {mode}")
            sub.add_argument("data", help="a local .zip (uploaded) or an http(s)/upload:// URL")
            sub.add_argument("--json", action="store_true")
            if command == "submit":
                sub.add_argument("--request-id", help="makes a retried submit return the same job")
            _parameter_flags(sub, mode)
            sub.set_defaults(run=function)
    for name, function, text in (("watch", cmd_watch, "follow a job; exit 0 only if it succeeds"),
                                 ("status", cmd_status, "show a job"), ("cancel", cmd_cancel, "cancel a job")):
        sub = commands.add_parser(name, parents=[data_dir], help=text)
        sub.add_argument("job")
        sub.add_argument("--json", action="store_true")
        sub.set_defaults(run=function)
    listing = commands.add_parser("list", parents=[data_dir], help="list your jobs")
    listing.add_argument("--state", choices=[s for s in jobs_pb2.JobState.keys() if s != "JOB_STATE_UNSPECIFIED"])
    listing.add_argument("--mode", choices=list(SCHEMAS))
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(run=cmd_list)
    usage = commands.add_parser("usage", parents=[data_dir], help="billed units and cost")
    usage.add_argument("--job")
    usage.add_argument("--json", action="store_true")
    usage.set_defaults(run=cmd_usage)
    demo = commands.add_parser("demo-data", parents=[data_dir], help="write a small synthetic dataset")
    demo.add_argument("mode", choices=list(SCHEMAS))
    demo.add_argument("out")
    demo.set_defaults(run=cmd_demo_data)
    model = commands.add_parser("model", parents=[data_dir], help="model utilities")
    model_commands = model.add_subparsers(dest="model_command", required=True)
    tiny = model_commands.add_parser("tiny", parents=[data_dir], help="write the tiny random-weight LTX-2.3 (diffusers format)")
    tiny.add_argument("dir")
    tiny.set_defaults(run=cmd_model)

    from avlora import cli_download, cli_gc
    cli_download.register(commands, data_dir)
    cli_gc.register(commands, data_dir)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
