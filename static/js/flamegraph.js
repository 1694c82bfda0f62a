/*
 * Flame graph interaction: click to zoom, search with highlights, tooltip, reset.
 *
 * The server draws the SVG (profiles/pages/flamegraph.py) and embeds the node table as JSON.
 * Zooming rescales the existing elements from that table, and creates elements only for frames
 * that a zoom makes at least a pixel wide; one listener per event on the SVG (delegation).
 */
(function () {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg";
  // Node row fields, as in profiles/pages/flamegraph.py.
  var NAME = 0, FILE = 1, LINE = 2, VALUE = 3, SELF = 4, X = 5, DEPTH = 6, COLOR = 7, BASE = 8;

  var TIME = [[1e9, " s"], [1e6, " ms"], [1e3, " µs"], [1, " ns"]];
  var BYTES = [[Math.pow(1024, 4), " TiB"], [Math.pow(1024, 3), " GiB"], [1048576, " MiB"], [1024, " KiB"], [1, " B"]];
  var COUNT = [[1e9, "G"], [1e6, "M"], [1e3, "k"], [1, ""]];

  function number(v) {
    var a = Math.abs(v), text;
    if (a >= 100 || a === 0) text = Math.round(v).toLocaleString("en-US");
    else if (a >= 10) text = v.toFixed(1);
    else text = v.toFixed(2);
    if (text.indexOf(".") >= 0) text = text.replace(/0+$/, "").replace(/\.$/, "");
    return text === "-0" ? "0" : text;
  }

  function formatValue(v, unit, perSecond) {
    var steps = unit === "nanoseconds" ? TIME : unit === "bytes" ? BYTES : COUNT;
    for (var k = 0; k < steps.length; k++) {
      if (Math.abs(v) >= steps[k][0] || k === steps.length - 1) {
        return number(v / steps[k][0]) + steps[k][1] + (perSecond ? "/s" : "");
      }
    }
    return String(v);
  }

  function percent(part, whole) {
    return whole > 0 ? number((100 * part) / whole) + "%" : "—";
  }

  function escapeRegExp(text) {
    return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  }

  function debounce(fn, ms) {
    var timer = null;
    return function () {
      clearTimeout(timer);
      timer = setTimeout(fn, ms);
    };
  }

  function FlameGraph(root) {
    var self = this;
    var source = document.getElementById(root.getAttribute("data-source"));
    this.data = JSON.parse(source.textContent);
    this.root = root;
    this.svg = root.querySelector("svg.flamegraph");
    this.layer = this.svg.querySelector("g.frames");
    this.tip = root.querySelector(".fg-tooltip");
    this.searchInput = root.querySelector(".fg-search");
    this.matchedLabel = root.querySelector(".fg-matched");
    this.zoomLabel = root.querySelector(".fg-zoomed");

    var count = this.data.nodes.length;
    this.els = new Array(count);
    this.shown = new Uint8Array(count);
    this.matched = new Uint8Array(count);
    var groups = this.layer.children;
    for (var k = 0; k < groups.length; k++) {
      var i = +groups[k].getAttribute("data-i");
      this.els[i] = groups[k];
      this.shown[i] = 1;
    }
    this.zoom = 0;
    this.width = this.data.width;
    this.height = this.svg.viewBox.baseVal.height;
    this.tipIndex = -1;

    this.svg.addEventListener("click", function (event) {
      var i = self.indexAt(event.target);
      if (i >= 0 && i !== self.zoom) self.zoomTo(i);
    });
    this.svg.addEventListener("mousemove", function (event) {
      self.showTip(self.indexAt(event.target), event);
    });
    this.svg.addEventListener("mouseleave", function () {
      self.hideTip();
    });
    root.querySelector(".fg-canvas").addEventListener("scroll", function () {
      self.hideTip();
    });
    root.querySelector(".fg-reset").addEventListener("click", function () {
      self.reset();
    });
    if (this.searchInput) {
      var search = debounce(function () {
        self.search(self.searchInput.value);
      }, 120);
      this.searchInput.addEventListener("input", search);
    }
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && self.zoom !== 0 && event.target === document.body) self.zoomTo(0);
    });
    window.addEventListener("resize", debounce(function () {
      self.fit();
    }, 150));
    this.fit();
    root.flamegraph = this; // handy from the console and in browser tests
    root.setAttribute("data-ready", "1");
  }

  FlameGraph.prototype.indexAt = function (target) {
    var g = target && target.closest ? target.closest("g.fr") : null;
    return g ? +g.getAttribute("data-i") : -1;
  };

  /* Match the drawing's coordinate system to its on-screen width, so text is never scaled. */
  FlameGraph.prototype.fit = function () {
    var width = Math.round(this.svg.getBoundingClientRect().width);
    if (width > 0 && width !== this.width) {
      this.width = width;
      this.svg.setAttribute("viewBox", "0 0 " + width + " " + this.height);
      this.render();
    }
  };

  FlameGraph.prototype.render = function () {
    var nodes = this.data.nodes;
    var z = nodes[this.zoom];
    var x0 = z[X], w0 = z[VALUE], d0 = z[DEPTH];
    var scale = this.width / w0;
    var eps = w0 * 1e-9;
    var minWidth = this.data.minWidth;
    for (var i = 0; i < nodes.length; i++) {
      var n = nodes[i];
      if (n[DEPTH] < d0) {
        // An ancestor of the zoomed frame spans the whole width; everything else above it hides.
        if (n[X] <= x0 + eps && n[X] + n[VALUE] >= x0 + w0 - eps) this.place(i, 0, this.width, true);
        else this.hide(i);
      } else if (n[X] >= x0 - eps && n[X] + n[VALUE] <= x0 + w0 + eps) {
        var w = n[VALUE] * scale;
        if (w >= minWidth) this.place(i, (n[X] - x0) * scale, w, false);
        else this.hide(i);
      } else {
        this.hide(i);
      }
    }
  };

  FlameGraph.prototype.hide = function (i) {
    if (this.shown[i]) {
      this.els[i].style.display = "none";
      this.shown[i] = 0;
    }
  };

  FlameGraph.prototype.create = function (i) {
    var d = this.data, n = d.nodes[i];
    var g = document.createElementNS(SVG_NS, "g");
    g.setAttribute("class", this.matched[i] ? "fr match" : "fr");
    g.setAttribute("data-i", i);
    var rect = document.createElementNS(SVG_NS, "rect");
    rect.setAttribute("y", n[DEPTH] * d.rowHeight);
    rect.setAttribute("height", d.frameHeight);
    rect.setAttribute("fill", d.colors[n[COLOR]]);
    g.appendChild(rect);
    this.layer.appendChild(g);
    this.els[i] = g;
    this.shown[i] = 1;
    return g;
  };

  FlameGraph.prototype.label = function (i, width) {
    var d = this.data;
    var chars = Math.floor((width - 2 * d.textPad) / d.charWidth);
    if (chars < d.minLabelChars) return "";
    var name = d.strings[d.nodes[i][NAME]];
    return name.length <= chars ? name : name.slice(0, chars - 1) + "…";
  };

  FlameGraph.prototype.place = function (i, x, width, ancestor) {
    var g = this.els[i];
    if (!g) g = this.create(i);
    else if (!this.shown[i]) {
      g.style.display = "";
      this.shown[i] = 1;
    }
    var rect = g.firstChild;
    rect.setAttribute("x", x.toFixed(2));
    rect.setAttribute("width", width.toFixed(2));
    var text = this.label(i, width);
    var node = g.childNodes[1];
    if (text) {
      if (!node) {
        node = document.createElementNS(SVG_NS, "text");
        node.setAttribute("y", this.data.nodes[i][DEPTH] * this.data.rowHeight + 12);
        g.appendChild(node);
      }
      node.setAttribute("x", (x + this.data.textPad).toFixed(2));
      if (node.textContent !== text) node.textContent = text;
    } else if (node && node.textContent) {
      node.textContent = "";
    }
    if (ancestor !== g.classList.contains("anc")) g.classList.toggle("anc", ancestor);
  };

  FlameGraph.prototype.zoomTo = function (i) {
    this.zoom = i;
    this.render();
    this.hideTip();
    this.root.classList.toggle("zoomed", i !== 0);
    this.changed();
    if (this.zoomLabel) {
      var n = this.data.nodes[i];
      this.zoomLabel.textContent = i === 0 ? "" :
        "Zoomed to " + this.data.strings[n[NAME]] + " (" + percent(n[VALUE], this.data.nodes[0][VALUE]) + " of all)";
    }
  };

  FlameGraph.prototype.reset = function () {
    if (this.searchInput) this.searchInput.value = "";
    this.search("");
    this.zoomTo(0);
  };

  /* Highlight frames whose function name matches; the matched share counts nested matches once. */
  FlameGraph.prototype.search = function (text) {
    var d = this.data, nodes = d.nodes;
    var re = null;
    text = (text || "").trim();
    if (text) {
      try {
        re = new RegExp(text, "i");
      } catch (err) {
        re = new RegExp(escapeRegExp(text), "i");
      }
    }
    var byString = new Int8Array(d.strings.length).fill(-1);
    var total = 0, end = -Infinity, count = 0;
    var eps = nodes[0][VALUE] * 1e-9;
    for (var i = 1; i < nodes.length; i++) {
      var n = nodes[i], hit = 0;
      if (re) {
        var s = n[NAME];
        if (byString[s] < 0) byString[s] = re.test(d.strings[s]) ? 1 : 0;
        hit = byString[s];
      }
      if (hit !== this.matched[i]) {
        this.matched[i] = hit;
        if (this.els[i]) this.els[i].classList.toggle("match", hit === 1);
      }
      if (hit) {
        count++;
        if (n[X] >= end - eps) { // pre-order: a match inside an earlier match starts before its end
          total += n[VALUE];
          end = n[X] + n[VALUE];
        }
      }
    }
    this.root.classList.toggle("searching", re !== null);
    this.searchRe = re;
    this.changed();
    if (this.matchedLabel) {
      this.matchedLabel.textContent = re === null ? "" : count === 0 ? "No match" :
        count + (count === 1 ? " frame" : " frames") + " · " + percent(total, nodes[0][VALUE]) + " of all";
    }
    return { count: count, value: total };
  };

  /* Tells listeners (e.g. the service page's function table) that the zoom or search changed. */
  FlameGraph.prototype.changed = function () {
    this.root.dispatchEvent(new CustomEvent("fg:change"));
  };

  /* A value in the graph's unit, for people: "1.2 s", "340 KiB/s". */
  FlameGraph.prototype.format = function (v) {
    return formatValue(v, this.data.unit, this.data.perSecond);
  };

  FlameGraph.prototype.hideTip = function () {
    this.tip.hidden = true;
    this.tipIndex = -1;
  };

  FlameGraph.prototype.fillTip = function (i) {
    var d = this.data, n = d.nodes[i], all = d.nodes[0][VALUE];
    var tip = this.tip;
    tip.textContent = "";
    function line(cls, text) {
      var el = document.createElement("div");
      el.className = cls;
      el.textContent = text;
      tip.appendChild(el);
    }
    line("tip-name", d.strings[n[NAME]]);
    var file = d.strings[n[FILE]];
    if (file) line("tip-where", file + (n[LINE] ? ":" + n[LINE] : ""));
    var value = function (v) { return formatValue(v, d.unit, d.perSecond); };
    var total = "Total " + value(n[VALUE]) + " · " + percent(n[VALUE], all) + " of all";
    var z = d.nodes[this.zoom];
    if (this.zoom !== 0 && n[DEPTH] >= z[DEPTH]) total += " · " + percent(n[VALUE], z[VALUE]) + " of view";
    line("tip-row", total);
    line("tip-row", "Self " + value(n[SELF]) + " · " + percent(n[SELF], all) + " of all");
    if (d.differential) {
      var base = n[BASE], delta = n[VALUE] - base;
      line("tip-row", "Base " + value(base) + " → comparison " + value(n[VALUE]));
      var change = base > 0 ? (delta >= 0 ? "+" : "") + number((100 * delta) / base) + "%" : "new in the comparison";
      line("tip-row " + (delta > 0 ? "worse" : delta < 0 ? "better" : ""),
        "Change " + change + " (" + (delta >= 0 ? "+" : "") + value(delta) + ")");
    }
  };

  FlameGraph.prototype.showTip = function (i, event) {
    if (i < 0) {
      this.hideTip();
      return;
    }
    if (i !== this.tipIndex) {
      this.fillTip(i);
      this.tipIndex = i;
    }
    this.tip.hidden = false;
    // Fixed to the viewport, so neither the scrolling canvas nor the card can clip it.
    var left = event.clientX + 14, top = event.clientY + 16;
    var width = this.tip.offsetWidth, height = this.tip.offsetHeight;
    if (left + width > window.innerWidth - 8) left = Math.max(8, event.clientX - width - 14);
    if (top + height > window.innerHeight - 8) top = Math.max(8, event.clientY - height - 12);
    this.tip.style.transform = "translate(" + Math.round(left) + "px," + Math.round(top) + "px)";
  };

  function init() {
    var roots = document.querySelectorAll("[data-flamegraph]");
    for (var k = 0; k < roots.length; k++) {
      if (!roots[k].flamegraph) new FlameGraph(roots[k]);
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
