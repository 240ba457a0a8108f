"""The `avlora` command line."""

import argparse
import json
import sys
from importlib.metadata import entry_points
from pathlib import Path

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from avlora.client import Endpoints, as_url, call
from avlora.job_state import TERMINAL, output_uris, state_label, state_name
from avlora.params import MODES, CommonParams, default_label, field_rules, field_type
from avlora.progress import JobView
from avlora.v1 import jobs_pb2, stages_pb2

SHORT_FLAGS = {"number_of_steps": "--steps"}
NOT_FLAGS = ("mode", "training_data_url", "validation")  # the positional DATA and --validation


def _parameter_flags(parser: argparse.ArgumentParser, schema: type[CommonParams]) -> None:
    """One flag per parameter of the mode's schema, its help the field's meaning, allowed values and
    default (the server checks the values)."""
    for name, field in schema.model_fields.items():
        if name in NOT_FLAGS:
            continue
        flags = [f"--{name.replace('_', '-')}"] + ([SHORT_FLAGS[name]] if name in SHORT_FLAGS else [])
        rules = field_rules(field)
        text = f"{field.description}" + (f"; {rules}" if rules else "") + f" (default: {default_label(field)})"
        text = text.replace("%", "%%")
        kind = field_type(field)
        if kind is bool:
            parser.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            parser.add_argument(*flags, dest=name, type=kind if kind in (int, float) else str, default=None,
                                help=text)
    parser.add_argument("--validation", action="append", default=[], metavar=_validation_metavar(schema),
                        help=f"{schema.model_fields['validation'].description}; local files are uploaded")


def validation_sample(schema: type[CommonParams], entry: str, endpoints: Endpoints) -> dict:
    """`PROMPT|MEDIA[|MEDIA]` as the mode's validation sample, local files uploaded."""
    prompt, *media = entry.split("|")
    fields = schema.validation_model().media_fields()
    required = [name for name, needed in fields.items() if needed]
    if len(media) < len(required) or len(media) > len(fields):
        raise SystemExit(f"--validation {entry!r}: expected {_validation_metavar(schema)}")
    return {"prompt": prompt} | {name: as_url(endpoints, value) for name, value in zip(fields, media)}


def _validation_metavar(schema: type[CommonParams]) -> str:
    fields = schema.validation_model().media_fields()
    return "PROMPT" + "".join(f"|{name.removesuffix('_url').upper()}" if required
                              else f"[|{name.removesuffix('_url').upper()}]" for name, required in fields.items())


def sent_values(args, endpoints: Endpoints) -> dict:
    """The parameters the user gave (flags set, the dataset, validation samples), by field name."""
    schema = MODES[args.mode]
    values = {name: getattr(args, name) for name in schema.model_fields
              if name not in NOT_FLAGS and getattr(args, name, None) is not None}
    values["training_data_url"] = as_url(endpoints, args.data)
    values["validation"] = [validation_sample(schema, entry, endpoints) for entry in args.validation]
    return values


def changed_by_server(sent: dict, job: jobs_pb2.Job) -> list[str]:
    """'name sent → effective' for every flag the server stored differently (e.g. snapped frames)."""
    effective = getattr(job.params, job.params.WhichOneof("mode"))
    lines = []
    for name, value in sent.items():
        if name in NOT_FLAGS:
            continue
        now = getattr(effective, name)
        if now != value and not (isinstance(value, float) and abs(now - value) <= 1e-9 * max(1.0, abs(value))):
            lines.append(f"{name} {value} → {now}")
    return lines


INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
         FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}


def message_dict(message) -> dict:
    """A message as JSON data, 64-bit integers as numbers (protobuf's JSON writes them as strings)."""
    data = json_format.MessageToDict(message, preserving_proto_field_name=True)
    _int64_as_numbers(message.DESCRIPTOR, data)
    return data


def _int64_as_numbers(descriptor, data: dict) -> None:
    for field in descriptor.fields:
        if field.name not in data:
            continue
        values = data[field.name] if field.is_repeated else [data[field.name]]
        if field.type in INT64:
            numbers = [int(value) for value in values]
            data[field.name] = numbers if field.is_repeated else numbers[0]
        elif field.message_type is not None and not field.message_type.full_name.startswith("google.protobuf."):
            for value in values:
                if isinstance(value, dict):
                    _int64_as_numbers(field.message_type, value)


def to_json(message) -> str:
    return json.dumps(message_dict(message), indent=2)


def describe(job: jobs_pb2.Job, endpoints: Endpoints | None = None) -> str:
    lines = [f"job {job.id} ({job.mode}): {state_label(job)}"]
    progress = job.progress
    if progress.stage:
        lines.append(f"  stage {progress.stage}: {progress.done}/{progress.total} {progress.unit} {progress.message}".rstrip())
    if progress.validation_loss or progress.baseline_validation_loss:
        on = f", on {progress.validation_loss_on.replace('_', ' ')}" if progress.validation_loss_on else ""
        lines.append(f"  validation loss {progress.validation_loss:.4f} "
                     f"(untrained {progress.baseline_validation_loss:.4f}{on})")
    if job.error:
        lines.append(f"  error: {job.error}")
    for name, value in output_uris(job.outputs).items():
        lines.append(f"  {name}: {endpoints.local_path(value) if endpoints else value}")
    lines.append(f"  billed {job.billed_units} units x {job.unit_price} = {job.cost:.4f}")
    return "\n".join(lines)


def cmd_submit(args) -> int:
    endpoints = Endpoints.find(args.data_dir)
    sent = sent_values(args, endpoints)
    request = jobs_pb2.CreateJobRequest(params=MODES[args.mode].message(sent), request_id=args.request_id or "",
                                        webhook_url=args.webhook_url or "")
    job = call(endpoints.jobs().CreateJob, request, metadata=endpoints.auth, timeout=60)
    for change in changed_by_server(sent, job):
        print(f"note: the server set {change}", file=sys.stderr)
    print(to_json(job) if args.json else job.id)
    return 0


def cmd_inspect(args) -> int:
    """Every dataset check, without encoding or training: free, and nothing is recorded."""
    endpoints = Endpoints.find(args.data_dir)
    request = stages_pb2.InspectDatasetRequest(params=MODES[args.mode].message(sent_values(args, endpoints)))
    report = call(endpoints.preprocess_stub().InspectDataset, request, metadata=endpoints.auth, timeout=3600)
    if args.json:
        print(to_json(report))
        return 0 if report.ok else 1
    for clip in report.clips:
        verdict = "ok     " if clip.accepted else "skipped"
        print(f"{verdict} {clip.name}  {clip.native_frames} frames @ {clip.native_fps:.3g} fps, "
              f"{clip.width}x{clip.height}  {clip.reason or clip.caption!r}")
        for warning in clip.warnings:
            print(f"warning {clip.name}: {warning}")
    for ignored in report.ignored:
        print(f"ignored {ignored.name}: {ignored.reason}")
    for error in report.errors:
        print(f"error: {error}")
    print("dataset OK" if report.ok else "dataset REJECTED")
    return 0 if report.ok else 1


def watch(endpoints: Endpoints, job_id: str, out=sys.stdout) -> jobs_pb2.Job:
    """Follows a job to its end, showing its progress on `out`; returns the final job."""
    view, job = JobView(out), None
    try:
        for job in endpoints.jobs().WatchJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=endpoints.auth):
            view.update(job)
    except grpc.RpcError as error:
        view.close()
        raise SystemExit(f"error: {error.code().name}: {error.details()}") from None
    view.close(job)
    return job


def cmd_watch(args) -> int:
    endpoints = Endpoints.find(args.data_dir)
    job = watch(endpoints, args.job)
    print(describe(job, endpoints))
    if job.state != jobs_pb2.SUCCEEDED:
        return 1
    if args.download:  # flags added by avlora/cli_download.py
        from avlora.cli_download import download_outputs
        for path in download_outputs(endpoints, job, Path(args.dir or job.id)):
            print(f"downloaded {path}")
    return 0


def cmd_status(args) -> int:
    endpoints = Endpoints.find(args.data_dir)
    job = call(endpoints.jobs().GetJob, jobs_pb2.GetJobRequest(job_id=args.job), metadata=endpoints.auth, timeout=30)
    print(to_json(job) if args.json else describe(job, endpoints))
    return 0


def cmd_list(args) -> int:
    endpoints = Endpoints.find(args.data_dir)
    request = jobs_pb2.ListJobsRequest(page_size=args.limit, mode=args.mode or "",
                                       state=jobs_pb2.JobState.Value(args.state) if args.state else 0)
    reply = call(endpoints.jobs().ListJobs, request, metadata=endpoints.auth, timeout=30)
    for job in reply.jobs:
        print(f"{job.id}  {job.mode:5}  {state_label(job):13}  {job.created_at.ToDatetime():%Y-%m-%d %H:%M:%S}")
    return 0


def cmd_cancel(args) -> int:
    endpoints = Endpoints.find(args.data_dir)
    before = call(endpoints.jobs().GetJob, jobs_pb2.GetJobRequest(job_id=args.job), metadata=endpoints.auth, timeout=30)
    if before.state in TERMINAL:
        return _already_ended(before, "had already")
    job = call(endpoints.jobs().CancelJob, jobs_pb2.CancelJobRequest(job_id=args.job), metadata=endpoints.auth, timeout=30)
    if job.state in TERMINAL and job.state != jobs_pb2.CANCELLED:
        return _already_ended(job, "ended before the cancel arrived:")
    print(to_json(job) if args.json else f"job {job.id}: {state_name(job.state)}")
    return 0


def _already_ended(job: jobs_pb2.Job, how: str) -> int:
    """Nothing to cancel. Exit 0 when the job is cancelled anyway, 1 when it finished otherwise."""
    if job.state == jobs_pb2.CANCELLED:
        print(f"job {job.id} was already cancelled")
        return 0
    print(f"job {job.id} {how} finished: {state_name(job.state)}; nothing to cancel")
    return 1


def cmd_usage(args) -> int:
    endpoints = Endpoints.find(args.data_dir)
    usage = call(endpoints.jobs().GetUsage, jobs_pb2.GetUsageRequest(job_id=args.job or ""),
                  metadata=endpoints.auth, timeout=30)
    if args.json:
        print(to_json(usage))
        return 0
    for line in usage.lines:
        print(f"{line.job_id}  {line.mode:5}  {state_name(line.state):10}  {line.units:6} units  {line.cost:.4f}")
    print(f"tenant {usage.tenant}: {usage.total_units} units, {usage.total_cost:.4f}")
    return 0


def cmd_webhook_secret(args) -> int:
    """The tenant's webhook signing secret (docs/webhooks.md); --rotate replaces it."""
    endpoints = Endpoints.find(args.data_dir)
    rpc = endpoints.jobs().RotateWebhookSecret if args.rotate else endpoints.jobs().GetWebhookSecret
    print(call(rpc, jobs_pb2.WebhookSecretRequest(), metadata=endpoints.auth, timeout=30).secret)
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
        for mode, schema in MODES.items():
            sub = modes.add_parser(mode, parents=[data_dir], help=schema.__doc__.split(":")[0],
                                   description=schema.__doc__)
            sub.add_argument("data", help="a local .zip (uploaded) or an http(s)/upload:// URL")
            sub.add_argument("--json", action="store_true")
            if command == "submit":
                sub.add_argument("--request-id", help="makes a retried submit return the same job")
                sub.add_argument("--webhook-url", help="POST each state change of the job here, signed "
                                 "(docs/webhooks.md; `avlora webhook-secret` prints the secret)")
            _parameter_flags(sub, schema)
            sub.set_defaults(run=function)
    for name, function, text in (("watch", cmd_watch, "follow a job; exit 0 only if it succeeds"),
                                 ("status", cmd_status, "show a job"), ("cancel", cmd_cancel, "cancel a job")):
        sub = commands.add_parser(name, parents=[data_dir], help=text)
        sub.add_argument("job")
        sub.add_argument("--json", action="store_true")
        sub.set_defaults(run=function)
    listing = commands.add_parser("list", parents=[data_dir], help="list your jobs")
    listing.add_argument("--state", choices=[s for s in jobs_pb2.JobState.keys() if s != "JOB_STATE_UNSPECIFIED"])
    listing.add_argument("--mode", choices=list(MODES))
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(run=cmd_list)
    usage = commands.add_parser("usage", parents=[data_dir], help="billed units and cost")
    usage.add_argument("--job")
    usage.add_argument("--json", action="store_true")
    usage.set_defaults(run=cmd_usage)
    secret = commands.add_parser("webhook-secret", parents=[data_dir], help="print the secret that signs your webhooks")
    secret.add_argument("--rotate", action="store_true", help="replace it with a new one (printed)")
    secret.set_defaults(run=cmd_webhook_secret)
    demo = commands.add_parser("demo-data", parents=[data_dir], help="write a small synthetic dataset")
    demo.add_argument("mode", choices=list(MODES))
    demo.add_argument("out")
    demo.set_defaults(run=cmd_demo_data)
    model = commands.add_parser("model", parents=[data_dir], help="model utilities")
    model_commands = model.add_subparsers(dest="model_command", required=True)
    tiny = model_commands.add_parser("tiny", parents=[data_dir], help="write the tiny random-weight LTX-2.3 (diffusers format)")
    tiny.add_argument("dir")
    tiny.set_defaults(run=cmd_model)

    from avlora import cli_download
    cli_download.register(commands, data_dir)
    for command in entry_points(group="avlora.commands"):  # e.g. `gc`, from services/ledger/gc.py
        command.load()(commands, data_dir)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
