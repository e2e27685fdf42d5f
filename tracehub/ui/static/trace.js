// The trace page's span tree and waterfall: one virtual list of fixed-height rows, drawn only for
// the window in view, so a trace of any size costs the same few dozen DOM rows.
// Data: the JSON island #spans (tracehub/ui/trace.py `layout`): rows in display order, each
// [id, name, type, status, level, start_ms, duration_ms, tokens, flags, end, count, parent].
// Untrusted text (names, types) only ever goes through textContent.
(function () {
  "use strict";
  var root = document.getElementById("tt");
  var island = document.getElementById("spans");
  if (!root || !island) return;
  if (window.performance && performance.mark) performance.mark("tracehub:trace-start");

  var ID = 0, NAME = 1, TYPE = 2, STATUS = 3, LEVEL = 4, START = 5, DUR = 6, TOKENS = 7, FLAGS = 8,
      END = 9, COUNT = 10, PARENT = 11;
  var ERROR = 1, OPEN = 2, JUDGE = 4, CRITICAL = 8, REMOTE = 16, MISSING = 32, CYCLE = 64,
      CONTINUED = 128, GROUP = 256;
  var ROW_H = 24, OVERSCAN = 12, INDENT = 14, MAX_INDENT = 40;

  var data = JSON.parse(island.textContent);
  var rows = data.rows, n = rows.length, totalMs = data.total_ms || 1;
  var L = root.dataset;
  var traceId = L.trace;
  var viewport = document.getElementById("tt-viewport");
  var spacer = viewport.querySelector(".tt-spacer");
  var layer = viewport.querySelector(".tt-rows");
  var countEl = document.getElementById("tt-count");
  var panel = document.getElementById("span-panel");

  // Expand / collapse state: groups start closed, spans open.
  var closed = new Uint8Array(n);
  var byId = Object.create(null);
  for (var i = 0; i < n; i++) {
    if (rows[i][FLAGS] & GROUP) closed[i] = 1;
    if (rows[i][ID]) byId[rows[i][ID]] = i;
  }
  var visible = [];           // row indexes in view order
  var pos = new Int32Array(n); // row index -> position in `visible`, -1 when hidden
  var selected = -1;
  var pool = [];
  var drawn = { first: -1, last: -1 };

  function hasKids(i) { return rows[i][END] > i + 1; }

  function rebuild() {
    visible = [];
    pos.fill(-1);
    var i = 0;
    while (i < n) {
      pos[i] = visible.length;
      visible.push(i);
      i = closed[i] ? rows[i][END] : i + 1;
    }
    spacer.style.height = visible.length * ROW_H + "px";
    // A small tree takes the room it needs; a large one scrolls within 70% of the window.
    viewport.style.height = Math.min(visible.length * ROW_H + 2, Math.max(240, window.innerHeight * 0.7)) + "px";
    countEl.textContent = visible.length.toLocaleString(document.body.dataset.lang || "en");
    drawn.first = -1;
    draw();
  }

  function pct(ms) { return Math.max(0, Math.min(100, ms / totalMs * 100)); }

  function makeRow() {
    var el = document.createElement("div");
    el.className = "tt-row";
    el.setAttribute("role", "treeitem");
    el.tabIndex = -1;
    var name = document.createElement("div");
    name.className = "tt-name";
    var tog = document.createElement("button");
    tog.type = "button";
    tog.className = "tt-tog";
    tog.tabIndex = -1;
    var type = document.createElement("span");
    type.className = "tt-type";
    var label = document.createElement("span");
    label.className = "tt-label";
    var marks = document.createElement("span");
    marks.className = "tt-marks";
    name.append(tog, type, label, marks);
    var cell = document.createElement("div");
    cell.className = "tt-bar-cell";
    var bar = document.createElement("div");
    bar.className = "tt-bar";
    var dur = document.createElement("span");
    dur.className = "tt-dur";
    cell.append(bar, dur);
    el.append(name, cell);
    el._parts = { name: name, tog: tog, type: type, label: label, marks: marks, bar: bar, dur: dur };
    layer.appendChild(el);
    return el;
  }

  function fmtMs(ms) {
    if (ms === null) return "";
    if (ms < 1) return ms.toFixed(2) + " ms";
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
    return Math.floor(ms / 60000) + " min " + Math.round(ms % 60000 / 1000) + " s";
  }

  function markText(f) {
    var out = [];
    if (f & ERROR) out.push(L.lError);
    if (f & OPEN) out.push(L.lOpen);
    if (f & JUDGE) out.push(L.lJudge);
    if (f & REMOTE) out.push(L.lRemote);
    if (f & MISSING) out.push(L.lMissing);
    if (f & CYCLE) out.push(L.lCycle);
    if (f & CONTINUED) out.push(L.lContinued);
    return out.join(" · ");
  }

  function fill(el, i) {
    var r = rows[i], f = r[FLAGS], p = el._parts;
    el.dataset.i = i;
    el.className = "tt-row" + (f & ERROR ? " err" : "") + (f & OPEN ? " open" : "") + (f & JUDGE ? " judge" : "") +
      (f & CRITICAL ? " crit" : "") + (f & GROUP ? " group" : "") + (i === selected ? " sel" : "");
    el.setAttribute("aria-level", r[LEVEL] + 1);
    el.setAttribute("aria-selected", i === selected ? "true" : "false");
    if (r[ID]) el.dataset.spanId = r[ID]; else delete el.dataset.spanId;
    p.name.style.paddingLeft = Math.min(r[LEVEL], MAX_INDENT) * INDENT + 4 + "px";
    if (hasKids(i)) {
      el.setAttribute("aria-expanded", closed[i] ? "false" : "true");
      p.tog.textContent = closed[i] ? "▸" : "▾";
      p.tog.setAttribute("aria-label", closed[i] ? L.lExpand : L.lCollapse);
      p.tog.hidden = false;
    } else {
      el.removeAttribute("aria-expanded");
      p.tog.hidden = true;
    }
    p.type.textContent = r[TYPE];
    p.label.textContent = (f & GROUP) ? r[NAME] + " ×" + r[COUNT] : r[NAME];
    p.marks.textContent = markText(f);
    el.title = r[NAME] + (r[DUR] === null ? " (" + L.lOpen + ")" : " · " + fmtMs(r[DUR]));
    var left = pct(r[START]);
    var width = r[DUR] === null ? 100 - left : Math.max(pct(r[DUR]), 0.15);
    p.bar.style.left = left + "%";
    p.bar.style.width = Math.min(width, 100 - left) + "%";
    p.dur.textContent = r[DUR] === null ? L.lOpen : fmtMs(r[DUR]);
    if (left + width > 80) {  // no room on the right: the label goes before the bar
      p.dur.style.left = "";
      p.dur.style.right = 100 - left + "%";
      p.dur.className = "tt-dur before";
    } else {
      p.dur.style.right = "";
      p.dur.style.left = left + width + "%";
      p.dur.className = "tt-dur";
    }
  }

  function draw() {
    var h = viewport.clientHeight || 600;
    var first = Math.max(0, Math.floor(viewport.scrollTop / ROW_H) - OVERSCAN);
    var last = Math.min(visible.length, Math.ceil((viewport.scrollTop + h) / ROW_H) + OVERSCAN);
    if (first === drawn.first && last === drawn.last) return;
    var refocus = viewport.contains(document.activeElement) && document.activeElement !== viewport;
    drawn.first = first; drawn.last = last;
    while (pool.length < last - first) pool.push(makeRow());
    for (var k = 0; k < pool.length; k++) {
      var el = pool[k];
      if (first + k < last) {
        el.hidden = false;
        fill(el, visible[first + k]);
      } else {
        el.hidden = true;
      }
    }
    layer.style.transform = "translateY(" + first * ROW_H + "px)";
    if (refocus) focusSelected();
  }

  function rowEl(i) {
    for (var k = 0; k < pool.length; k++) {
      if (!pool[k].hidden && +pool[k].dataset.i === i) return pool[k];
    }
    return null;
  }

  function focusSelected() {
    var el = selected >= 0 ? rowEl(selected) : null;
    if (el) el.focus({ preventScroll: true }); else viewport.focus({ preventScroll: true });
  }

  function scrollTo(i) {
    var at = pos[i] * ROW_H, h = viewport.clientHeight;
    if (at < viewport.scrollTop || at + ROW_H > viewport.scrollTop + h) {
      viewport.scrollTop = Math.max(0, at - h / 3);
    }
    drawn.first = -1;
    draw();
  }

  function reveal(i) {
    var changed = false;
    for (var p = rows[i][PARENT]; p >= 0; p = rows[p][PARENT]) {
      if (closed[p]) { closed[p] = 0; changed = true; }
    }
    if (changed) rebuild();
  }

  function select(i, open) {
    selected = i;
    reveal(i);
    scrollTo(i);
    focusSelected();
    if (open && rows[i][ID]) openPanel(rows[i][ID]);
  }

  function openPanel(spanId) {
    var url = "/traces/" + traceId + "/spans/" + spanId;
    if (window.htmx) {
      window.htmx.ajax("GET", url, { target: panel, swap: "innerHTML" });
    } else {
      window.location.href = url;
    }
    var query = new URLSearchParams(window.location.search);
    query.set("span", spanId);
    window.history.replaceState(null, "", "?" + query.toString());
  }

  function toggle(i, open) {
    if (!hasKids(i)) return;
    closed[i] = open === undefined ? (closed[i] ? 0 : 1) : (open ? 0 : 1);
    rebuild();
  }

  function jump(bit, step) {
    var start = selected < 0 ? (step > 0 ? -1 : n) : selected;
    for (var k = 1; k <= n; k++) {
      var i = ((start + step * k) % n + n) % n;
      if ((rows[i][FLAGS] & bit) && !(rows[i][FLAGS] & GROUP)) { select(i, true); return true; }
    }
    return false;
  }

  function moveBy(step) {
    if (!visible.length) return;
    var at = selected >= 0 && pos[selected] >= 0 ? pos[selected] : (step > 0 ? -1 : visible.length);
    var next = Math.max(0, Math.min(visible.length - 1, at + step));
    select(visible[next], false);
  }

  // Events ---------------------------------------------------------------------------------------

  viewport.addEventListener("scroll", function () { window.requestAnimationFrame(draw); }, { passive: true });
  window.addEventListener("resize", function () { drawn.first = -1; draw(); });

  layer.addEventListener("click", function (event) {
    var el = event.target.closest(".tt-row");
    if (!el) return;
    var i = +el.dataset.i;
    if (event.target.closest(".tt-tog") || (rows[i][FLAGS] & GROUP)) {
      toggle(i);
      selected = i;
      drawn.first = -1;
      draw();
      return;
    }
    selected = i;
    drawn.first = -1;
    draw();
    openPanel(rows[i][ID]);
  });

  root.querySelector(".tt-toolbar").addEventListener("click", function (event) {
    var button = event.target.closest("button[data-tt]");
    if (!button) return;
    var what = button.dataset.tt;
    if (what === "expand") { closed.fill(0); rebuild(); }
    else if (what === "collapse") {
      for (var i = 0; i < n; i++) closed[i] = hasKids(i) ? 1 : 0;
      if (selected >= 0 && pos[selected] < 0) selected = -1;
      rebuild();
    }
    else if (what === "error") jump(ERROR, 1);
    else if (what === "judge") jump(JUDGE, 1);
  });

  // Links to a span elsewhere on the page (decisions, judge runs, evals, the panel's parent):
  // shown in the tree without a reload.
  document.addEventListener("click", function (event) {
    var link = event.target.closest("a[data-span]");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
    var i = byId[link.dataset.span];
    if (i === undefined) return;
    event.preventDefault();
    select(i, true);
    root.scrollIntoView({ block: "nearest" });
  });

  function typing(target) {
    return target.closest && target.closest("input, textarea, select, [contenteditable]");
  }

  // Keys (before app.js's list keys): j/k rows, ←/→ collapse/expand, Enter opens, e/g next error /
  // judge (E/G previous). They act when focus is in the tree or on nothing in particular.
  window.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    var active = document.activeElement;
    var inTree = viewport.contains(active);
    if (!inTree && active && active !== document.body) return;
    var handled = true;
    switch (event.key) {
      case "j": case "ArrowDown": if (!inTree && event.key !== "j") { handled = false; break; } moveBy(1); break;
      case "k": case "ArrowUp": if (!inTree && event.key !== "k") { handled = false; break; } moveBy(-1); break;
      case "ArrowRight": if (inTree && selected >= 0) toggle(selected, true); else handled = false; break;
      case "ArrowLeft":
        if (!inTree || selected < 0) { handled = false; break; }
        if (hasKids(selected) && !closed[selected]) toggle(selected, false);
        else if (rows[selected][PARENT] >= 0) select(rows[selected][PARENT], false);
        break;
      case "Enter":
        if (!inTree || selected < 0) { handled = false; break; }
        if (rows[selected][FLAGS] & GROUP) toggle(selected); else openPanel(rows[selected][ID]);
        break;
      case "e": jump(ERROR, 1); break;
      case "E": jump(ERROR, -1); break;
      case "g": jump(JUDGE, 1); break;
      case "G": jump(JUDGE, -1); break;
      default: handled = false;
    }
    if (handled) { event.preventDefault(); event.stopPropagation(); }
  }, true);

  // Start: a deep link's span (?span=) is shown and selected; its panel came with the page.
  rebuild();
  var wanted = root.dataset.selected;
  if (wanted && byId[wanted] !== undefined) {
    selected = byId[wanted];
    reveal(selected);
    scrollTo(selected);
  }
  root.querySelectorAll(".tt-tick").forEach(function (el) {
    el.style.left = el.dataset.pct + "%";
  });
  root.dataset.ready = "1";
  if (window.performance && performance.mark) performance.mark("tracehub:trace-ready");  // bench/ui.py
})();
