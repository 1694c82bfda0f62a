/*
 * The service page: a range picked by dragging on the timeline (shift-drag: the base range to
 * compare with), and the function table beside the flame graph, which follows its zoom and
 * search; picking a function shows its callers and callees and focuses the graph on it.
 */
(function () {
  "use strict";

  // Node row fields, as in profiles/pages/flamegraph.py.
  var NAME = 0, FILE = 1, LINE = 2, VALUE = 3, SELF = 4, X = 5, DEPTH = 6;
  var MAX_ROWS = 300;

  function escapeRegExp(text) {
    return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  }

  /* --- range picker ------------------------------------------------------------------------- */

  function RangePicker(card) {
    var svg = card.querySelector("svg.timeline");
    if (!svg) return;
    var start = +svg.getAttribute("data-start"), end = +svg.getAttribute("data-end");
    var left = +svg.getAttribute("data-left"), width = +svg.getAttribute("data-width");
    var drag = svg.querySelector("rect.drag");
    var from = null, shift = false;

    function xAt(event) {
      var box = svg.getBoundingClientRect();
      var x = ((event.clientX - box.left) * svg.viewBox.baseVal.width) / box.width;
      return Math.min(Math.max(x, left), left + width);
    }
    function timeAt(x) {
      return start + ((x - left) / width) * (end - start);
    }
    function iso(ms) {
      return new Date(Math.round(ms / 1000) * 1000).toISOString().replace(".000Z", "Z");
    }

    svg.addEventListener("pointerdown", function (event) {
      from = xAt(event);
      shift = event.shiftKey;
      drag.setAttribute("class", shift ? "drag base" : "drag");
      drag.setAttribute("x", from);
      drag.setAttribute("width", 0);
      drag.setAttribute("visibility", "visible");
      svg.setPointerCapture(event.pointerId);
      event.preventDefault();
    });
    svg.addEventListener("pointermove", function (event) {
      if (from === null) return;
      var x = xAt(event);
      drag.setAttribute("x", Math.min(from, x));
      drag.setAttribute("width", Math.abs(x - from));
    });
    svg.addEventListener("pointerup", function (event) {
      if (from === null) return;
      var to = xAt(event), a = Math.min(from, to), b = Math.max(from, to);
      from = null;
      if (b - a < 2) { // a click, not a drag
        drag.setAttribute("visibility", "hidden");
        return;
      }
      var params = new URLSearchParams(card.getAttribute("data-link"));
      var current = { from: card.getAttribute("data-from"), to: card.getAttribute("data-to") };
      var base = { from: card.getAttribute("data-base-from"), to: card.getAttribute("data-base-to") };
      if (shift) base = { from: iso(timeAt(a)), to: iso(timeAt(b)) };
      else current = { from: iso(timeAt(a)), to: iso(timeAt(b)) };
      params.set("from", current.from);
      params.set("to", current.to);
      if (base.from) {
        params.set("baseFrom", base.from);
        params.set("baseTo", base.to);
      }
      window.location.search = params.toString();
    });
  }

  /* --- function table and sandwich ---------------------------------------------------------- */

  function FunctionTable(panel, fg) {
    var self = this;
    this.panel = panel;
    this.fg = fg;
    this.body = panel.querySelector(".fn-table tbody");
    this.scope = panel.querySelector(".fn-scope");
    this.sandwich = panel.querySelector(".sandwich");
    var nodes = fg.data.nodes;
    // Parent of every node (pre-order: the nearest earlier node one level up) and its function key.
    this.parent = new Int32Array(nodes.length);
    this.keys = new Array(nodes.length);
    var path = [];
    for (var i = 0; i < nodes.length; i++) {
      var n = nodes[i];
      path.length = n[DEPTH];
      this.parent[i] = n[DEPTH] ? path[n[DEPTH] - 1] : -1;
      path.push(i);
      this.keys[i] = n[NAME] + ":" + n[FILE] + ":" + n[LINE];
    }
    this.body.addEventListener("click", function (event) {
      var button = event.target.closest ? event.target.closest("button.fn-pick") : null;
      if (button) self.pick(button.getAttribute("data-key"));
    });
    fg.root.addEventListener("fg:change", function () {
      self.update();
    });
    this.update();
  }

  FunctionTable.prototype.name = function (i) {
    return this.fg.data.strings[this.fg.data.nodes[i][NAME]];
  };

  /* Self and total per function inside the zoomed frame; a recursive function's total counts once. */
  FunctionTable.prototype.update = function () {
    var d = this.fg.data, nodes = d.nodes, zoom = this.fg.zoom, z = nodes[zoom];
    var eps = nodes[0][VALUE] * 1e-9;
    var rows = {}, order = [], onPath = {}, path = [];
    var top = z[DEPTH] + (zoom === 0 ? 1 : 0); // depth of the first counted level
    for (var i = zoom; i < nodes.length; i++) {
      var n = nodes[i];
      if (i > zoom && (n[DEPTH] <= z[DEPTH] || n[X] >= z[X] + z[VALUE] - eps)) break; // left the subtree
      if (n[DEPTH] === 0) continue;
      while (path.length > n[DEPTH] - top) onPath[path.pop()]--;
      var key = this.keys[i], row = rows[key];
      if (!row) {
        row = rows[key] = { key: key, index: i, self: 0, total: 0 };
        order.push(row);
      }
      row.self += n[SELF];
      if (!onPath[key]) row.total += n[VALUE];
      onPath[key] = (onPath[key] || 0) + 1;
      path.push(key);
    }
    var re = this.fg.searchRe, table = this;
    if (re) order = order.filter(function (row) { return re.test(table.name(row.index)); });
    order.sort(function (a, b) { return b.self - a.self || b.total - a.total; });
    this.scope.textContent = (zoom ? "inside " + this.name(zoom) : "whole graph") + (re ? " · matching the search" : "");
    var whole = z[VALUE], body = this.body;
    body.textContent = "";
    order.slice(0, MAX_ROWS).forEach(function (row) {
      var tr = document.createElement("tr");
      var cell = document.createElement("td");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "fn-pick link";
      button.setAttribute("data-key", row.key);
      button.textContent = table.name(row.index);
      var file = d.strings[nodes[row.index][FILE]];
      button.title = file + (nodes[row.index][LINE] ? ":" + nodes[row.index][LINE] : "");
      cell.appendChild(button);
      tr.appendChild(cell);
      [row.self, row.total].forEach(function (v) {
        var td = document.createElement("td");
        td.className = "num";
        td.textContent = table.fg.format(v);
        td.title = whole > 0 ? ((100 * v) / whole).toFixed(1) + "% of the view" : "";
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    this.panel.setAttribute("data-rows", String(Math.min(order.length, MAX_ROWS)));
  };

  /* The sandwich of a function: who calls it and what it calls, across the whole graph; the
   * graph highlights every frame of it and zooms to its largest one. */
  FunctionTable.prototype.pick = function (key) {
    var nodes = this.fg.data.nodes, callers = {}, callees = {}, largest = -1, name = "";
    for (var i = 1; i < nodes.length; i++) {
      if (this.keys[i] === key) {
        if (largest < 0 || nodes[i][VALUE] > nodes[largest][VALUE]) largest = i;
        name = this.name(i);
        var p = this.parent[i];
        var caller = p > 0 ? this.keys[p] : "(root)";
        callers[caller] = (callers[caller] || { index: p, value: 0 });
        callers[caller].value += nodes[i][VALUE];
      } else if (this.keys[this.parent[i]] === key) {
        var callee = callees[this.keys[i]] = callees[this.keys[i]] || { index: i, value: 0 };
        callee.value += nodes[i][VALUE];
      }
    }
    if (largest < 0) return;
    this.sandwich.querySelector(".sandwich-name").textContent = name;
    this.fill(this.sandwich.querySelector(".fn-callers tbody"), callers);
    this.fill(this.sandwich.querySelector(".fn-callees tbody"), callees);
    this.sandwich.hidden = false;
    this.panel.setAttribute("data-picked", name);
    var search = this.fg.searchInput;
    var exact = "^" + escapeRegExp(name) + "$";
    if (search) search.value = exact;
    this.fg.search(exact);
    this.fg.zoomTo(largest);
  };

  FunctionTable.prototype.fill = function (tbody, entries) {
    var table = this, list = Object.keys(entries).map(function (k) { return entries[k]; });
    list.sort(function (a, b) { return b.value - a.value; });
    tbody.textContent = "";
    if (!list.length) {
      var empty = document.createElement("tr");
      empty.innerHTML = '<td class="muted">none</td>';
      tbody.appendChild(empty);
    }
    list.forEach(function (entry) {
      var tr = document.createElement("tr");
      var name = document.createElement("td");
      name.className = "mono";
      name.textContent = entry.index > 0 ? table.name(entry.index) : "(root)";
      var value = document.createElement("td");
      value.className = "num";
      value.textContent = table.fg.format(entry.value);
      tr.appendChild(name);
      tr.appendChild(value);
      tbody.appendChild(tr);
    });
  };

  function init() {
    var picker = document.querySelector("[data-range-picker]");
    if (picker) new RangePicker(picker);
    var panel = document.querySelector("[data-fn-table]");
    if (!panel) return;
    var root = document.querySelector(panel.getAttribute("data-flamegraph-root"));
    if (root && root.flamegraph) panel.functionTable = new FunctionTable(panel, root.flamegraph);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
