// The trace list's filters, its live tail and the charts' local hours. No inline script: the
// page marks elements with data-* attributes ([data-filters], [data-live], [data-live-toggle]).
(function () {
  "use strict";
  var lang = document.body.dataset.lang || "en";

  // A filter form leaves its empty fields out of the URL: the link stays short and shareable.
  function submitFilters(form) {
    var params = new URLSearchParams();
    new FormData(form).forEach(function (value, name) {
      if (typeof value === "string" && value.trim() !== "") params.append(name, value.trim());
    });
    var query = params.toString();
    window.location.assign(form.getAttribute("action") + (query ? "?" + query : ""));
  }
  document.addEventListener("submit", function (event) {
    var form = event.target.closest("form[data-filters]");
    if (!form) return;
    event.preventDefault();
    submitFilters(form);
  });
  document.addEventListener("change", function (event) {
    var field = event.target.closest("[data-autosubmit]");
    if (field && field.form && field.form.matches("[data-filters]")) submitFilters(field.form);
  });

  // Live tail: htmx polls [data-live]; a paused tail cancels the poll before it is sent, and a
  // hidden tab does not poll. The pause button is outside the swapped list, so its state stays.
  function toggle() { return document.querySelector("[data-live-toggle]"); }
  function paused() { var b = toggle(); return !!b && b.getAttribute("aria-pressed") === "true"; }
  function setPaused(on) {
    var b = toggle();
    if (!b) return;
    b.setAttribute("aria-pressed", on ? "true" : "false");
    b.textContent = on ? b.dataset.labelResume : b.dataset.labelPause;
    var state = document.querySelector("[data-live-state]");
    if (state) {
      state.textContent = on ? state.dataset.labelPaused : state.dataset.labelLive;
      state.classList.toggle("paused", on);
    }
    var live = document.querySelector("[data-live]");
    if (live) live.dataset.paused = on ? "true" : "false";
  }
  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-live-toggle]")) setPaused(!paused());
  });
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    if (elt && elt.matches("[data-live]") && (paused() || document.hidden)) event.preventDefault();
  });

  // Across a swap: keep the focused row focused and mark the rows that are new.
  var before = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (!event.detail.target.matches("[data-live]")) return;
    var focused = document.activeElement && document.activeElement.closest("[data-trace-id]");
    var known = {};
    event.detail.target.querySelectorAll("[data-trace-id]").forEach(function (row) { known[row.dataset.traceId] = true; });
    before = { focused: focused ? focused.dataset.traceId : null, known: known };
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    if (!event.detail.target.matches("[data-live]") || !before) return;
    var seen = before;
    before = null;
    event.detail.target.querySelectorAll("[data-trace-id]").forEach(function (row) {
      if (!seen.known[row.dataset.traceId]) row.classList.add("fresh");
      if (row.dataset.traceId === seen.focused) row.focus({ preventScroll: true });
    });
  });

  // Chart ticks: the hour (or day) in the viewer's time zone.
  function localHours(root) {
    root.querySelectorAll("svg.chart text[data-hour]").forEach(function (el) {
      var d = new Date(el.getAttribute("data-hour"));
      if (isNaN(d)) return;
      el.textContent = el.dataset.daily === "1"
        ? d.toLocaleDateString(lang, { month: "2-digit", day: "2-digit" })
        : d.toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit", hour12: false });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { localHours(document); });
  document.addEventListener("htmx:afterSwap", function () { localHours(document); });
})();
