// Live updates without reloading: every element with data-live="URL" is replaced by the server's
// fragment every 2 s until the fragment is final (data-final); with data-reload-on-end the page then
// reloads once (to show the outputs and previews). The fragments are HTML rendered and escaped by
// the server.
"use strict";
document.querySelectorAll("[data-live]").forEach(function (box) {
  var url = box.getAttribute("data-live");
  function tick() {
    fetch(url, {credentials: "same-origin", redirect: "manual"}).then(function (response) {
      if (!response.ok) { throw new Error(String(response.status)); }
      return response.text();
    }).then(function (html) {
      box.innerHTML = html;
      if (box.querySelector("[data-final]")) {
        if (box.hasAttribute("data-reload-on-end")) { window.location.reload(); }
        return;
      }
      window.setTimeout(tick, 2000);
    }).catch(function () { window.setTimeout(tick, 5000); });
  }
  if (!box.querySelector("[data-final]")) { window.setTimeout(tick, 2000); }
});
