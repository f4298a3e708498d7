// zray dashboard: every [data-fragment] element is fetched again from the head every
// data-every milliseconds and swapped in (the server renders the HTML), so the page
// updates live without a reload. Open <details> and a log scrolled to its end stay so.
(function () {
  "use strict";
  var live = document.getElementById("live");

  function say(ok, text) {
    if (!live) return;
    live.className = ok ? "ok" : "down";
    live.textContent = text;
  }

  function refresh(el) {
    if (document.hidden) return Promise.resolve();
    return fetch(el.dataset.fragment, {cache: "no-store"}).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.text();
    }).then(function (html) {
      if (html !== el._zrayLast) {
        var open = {};
        el.querySelectorAll("details[open]").forEach(function (d) { open[d.dataset.key] = 1; });
        var log = el.querySelector("pre.log");
        var atEnd = !log || log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        el.innerHTML = html;
        el._zrayLast = html;
        el.querySelectorAll("details").forEach(function (d) { if (open[d.dataset.key]) d.open = true; });
        var newLog = el.querySelector("pre.log");
        if (newLog && atEnd) newLog.scrollTop = newLog.scrollHeight;
      }
      say(true, "live · " + new Date().toLocaleTimeString());
    }).catch(function (e) {
      say(false, "cannot reach the head (" + e.message + ")");
    });
  }

  document.querySelectorAll("[data-fragment]").forEach(function (el) {
    el._zrayLast = el.innerHTML;
    var log = el.querySelector("pre.log");
    if (log) log.scrollTop = log.scrollHeight;
    setInterval(function () { refresh(el); }, +el.dataset.every || 2000);
  });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) document.querySelectorAll("[data-fragment]").forEach(refresh);
  });
})();
