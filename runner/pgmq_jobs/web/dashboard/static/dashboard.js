// pgmq-jobs dashboard: auto-refresh of the [data-live] sections, the action token, confirms.
// Plain script, no library; everything else is rendered by the server.
(function () {
  "use strict";
  var KEY = "pgmq-jobs-dashboard-token";
  var PAUSE = "pgmq-jobs-dashboard-paused";

  // The start-up URL carries the token in its fragment (never sent to the server):
  // keep it for this tab, then drop it from the address bar.
  var m = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (m) {
    try { sessionStorage.setItem(KEY, decodeURIComponent(m[1])); } catch (e) { /* private mode */ }
    history.replaceState(null, "", location.pathname + location.search);
  }
  function fillTokens(root) {
    var token = null;
    try { token = sessionStorage.getItem(KEY); } catch (e) { token = null; }
    if (!token) return;
    root.querySelectorAll('input[name="token"]').forEach(function (input) {
      if (!input.value) input.value = token;
    });
  }
  fillTokens(document);

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) event.preventDefault();
  });
  document.addEventListener("submit", function (event) {
    var input = event.target.querySelector('input[name="token"]');
    if (input && input.value) {
      try { sessionStorage.setItem(KEY, input.value); } catch (e) { /* ignore */ }
    }
  });
  // "Select all" boxes: data-select names the checkboxes they tick (dead_id, job_id).
  document.querySelectorAll("input.select-all[data-select]").forEach(function (all) {
    all.addEventListener("change", function () {
      var name = all.getAttribute("data-select");
      document.querySelectorAll('input[name="' + name + '"]').forEach(function (box) {
        box.checked = all.checked;
      });
    });
  });

  var every = Number(document.body.getAttribute("data-refresh") || 0);
  var live = document.getElementById("live");
  var liveText = document.getElementById("live-text");
  var updated = document.getElementById("updated");
  var toggle = document.getElementById("refresh-toggle");
  if (!every || !live) return;
  var paused = localStorage.getItem(PAUSE) === "1";
  var busy = false;

  function show() {
    live.classList.toggle("off", paused);
    liveText.textContent = paused ? "paused" : "live";
    if (toggle) toggle.textContent = paused ? "Resume" : "Pause";
  }
  show();
  if (toggle) {
    toggle.addEventListener("click", function () {
      paused = !paused;
      localStorage.setItem(PAUSE, paused ? "1" : "0");
      show();
      if (!paused) refresh();
    });
  }

  function refresh() {
    if (paused || busy || document.hidden) return;
    busy = true;
    fetch(location.href, { headers: { "X-Dashboard-Refresh": "1" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (text) {
        var next = new DOMParser().parseFromString(text, "text/html");
        document.querySelectorAll("[data-live][id]").forEach(function (section) {
          var fresh = next.getElementById(section.id);
          if (fresh) section.replaceWith(document.importNode(fresh, true));
        });
        var stamp = next.getElementById("updated");
        if (stamp && updated) {
          updated.textContent = stamp.textContent;
          updated.setAttribute("datetime", stamp.getAttribute("datetime"));
        }
        live.classList.remove("error");
        show();
        document.dispatchEvent(new CustomEvent("dashboard:refreshed"));
      })
      .catch(function () {
        live.classList.add("error");
        liveText.textContent = "offline";
      })
      .finally(function () { busy = false; });
  }
  setInterval(refresh, every * 1000);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) refresh();
  });
})();
