// Shared behaviour of every page: local times, keyboard navigation, search focus.
// No inline script anywhere (the Content-Security-Policy forbids it): pages mark elements with
// data-* attributes and this file gives them behaviour.
(function () {
  "use strict";
  var lang = document.body.dataset.lang || "en";

  // <time datetime="ISO">: shown in the browser's time zone.
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      if (el.dataset.localized) return;
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) return;
      el.title = el.getAttribute("datetime");
      el.textContent = d.toLocaleString(lang, {
        year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false
      });
      el.dataset.localized = "1";
    });
  }

  // j / k move through the rows of the page's list ([data-row]); Enter opens the focused row.
  function rows() {
    return Array.prototype.filter.call(document.querySelectorAll("[data-row]"), function (el) {
      return el.offsetParent !== null;
    });
  }
  function typing(target) {
    return target.closest("input, textarea, select, [contenteditable]");
  }
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    if (event.key === "/") {
      var search = document.querySelector("[data-search]");
      if (search) { event.preventDefault(); search.focus(); search.select(); }
      return;
    }
    if (event.key !== "j" && event.key !== "k" && event.key !== "Enter") return;
    var list = rows();
    if (!list.length) return;
    var at = list.indexOf(document.activeElement);
    if (event.key === "Enter") {
      if (at < 0) return;
      var link = list[at].matches("a[href]") ? list[at] : list[at].querySelector("a[href]");
      if (link) { event.preventDefault(); link.click(); }
      return;
    }
    event.preventDefault();
    var next = event.key === "j" ? Math.min(at + 1, list.length - 1) : Math.max(at - 1, 0);
    if (!list[next].hasAttribute("tabindex")) list[next].setAttribute("tabindex", "-1");
    list[next].focus();
    list[next].scrollIntoView({ block: "nearest" });
  });

  function ready(root) { localTimes(root); }
  document.addEventListener("DOMContentLoaded", function () { ready(document); });
  document.addEventListener("htmx:afterSwap", function (event) { ready(event.target); });
  window.tracehub = { localTimes: localTimes };
})();
