/*
 * Small enhancements of the server-rendered pages (each works without this script too):
 * live progress of running profiles, picking two profiles to compare, sorting the
 * top-functions table in place, selecting the share link on focus.
 */
(function () {
  "use strict";

  function getJSON(url) {
    return fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" }).then(function (r) {
      var type = r.headers.get("Content-Type") || "";
      if (!r.ok || type.indexOf("application/json") < 0) throw new Error("HTTP " + r.status);
      return r.json();
    });
  }

  function setBadge(badge, status) {
    if (!badge) return;
    badge.className = "badge " + status.status;
    badge.textContent = status.status === "running" ? status.phaseLabel : status.status;
  }

  /* The detail page of a running profile: follow it until it completes or fails, then show it. */
  function followRun(card) {
    var url = card.getAttribute("data-status-url");
    var bar = card.querySelector("[data-bar]");
    var phase = card.querySelector("[data-phase]");
    var pct = card.querySelector("[data-percent]");
    var errorBox = card.querySelector("[data-error]");
    var failures = 0;
    function tick() {
      getJSON(url).then(function (status) {
        failures = 0;
        var progress = Math.round(status.progress * 100);
        bar.style.width = progress + "%";
        phase.textContent = status.phaseLabel.charAt(0).toUpperCase() + status.phaseLabel.slice(1);
        pct.textContent = progress + "%";
        setBadge(document.querySelector(".page-head [data-badge]"), status);
        card.setAttribute("data-status", status.status);
        if (status.status === "running") setTimeout(tick, 1000);
        else window.location.reload();
      }).catch(function () {
        failures += 1;
        if (failures >= 5) {
          errorBox.hidden = false;
          errorBox.textContent = "Lost contact with the server; reload the page to try again.";
        } else {
          setTimeout(tick, 1000 * Math.pow(2, failures));
        }
      });
    }
    setTimeout(tick, 1000);
  }

  /* The list: update the badges of running rows; reload when one ends, unless a pick is in progress. */
  function followRows(rows) {
    rows.forEach(function (row) {
      var url = row.getAttribute("data-status-url");
      function tick() {
        getJSON(url).then(function (status) {
          setBadge(row.querySelector("[data-badge]"), status);
          var bar = row.querySelector("[data-progress] span");
          if (bar) bar.style.width = Math.round(status.progress * 100) + "%";
          if (status.status === "running") {
            setTimeout(tick, 2000);
          } else if (!document.querySelector("[data-compare-pick] input:checked")) {
            window.location.reload();
          }
        }).catch(function () { /* leave the row as rendered */ });
      }
      setTimeout(tick, 2000);
    });
  }

  function comparePicker(form) {
    var button = form.querySelector("[data-compare-button]");
    var hint = form.querySelector("[data-compare-hint]");
    function update() {
      var checked = form.querySelectorAll("input[name=p]:checked").length;
      button.disabled = checked !== 2;
      hint.textContent = checked === 2 ? "Compare the older (base) with the newer." :
        "Select two completed profiles of one type to compare them (" + checked + " selected).";
    }
    form.addEventListener("change", update);
    update();
  }

  function sortableTable(table) {
    var tbody = table.tBodies[0];
    table.querySelectorAll("a[data-sort]").forEach(function (link) {
      link.addEventListener("click", function (event) {
        event.preventDefault();
        var key = link.getAttribute("data-sort");
        var other = key === "self" ? "total" : "self";
        var rows = Array.prototype.slice.call(tbody.rows).filter(function (r) { return r.hasAttribute("data-self"); });
        rows.sort(function (a, b) {
          return (+b.getAttribute("data-" + key) - +a.getAttribute("data-" + key)) ||
            (+b.getAttribute("data-" + other) - +a.getAttribute("data-" + other));
        });
        rows.forEach(function (row, index) {
          row.cells[0].textContent = index + 1;
          tbody.appendChild(row);
        });
        table.querySelectorAll("th.sortable").forEach(function (th) {
          th.classList.toggle("sorted", th.contains(link));
        });
        if (window.history.replaceState) window.history.replaceState(null, "", link.getAttribute("href"));
      });
    });
  }

  function init() {
    var card = document.querySelector("[data-run-progress]");
    if (card) followRun(card);
    var rows = Array.prototype.slice.call(document.querySelectorAll("tr[data-status-url]"));
    if (rows.length) followRows(rows);
    var pick = document.querySelector("[data-compare-pick]");
    if (pick) comparePicker(pick);
    document.querySelectorAll("table[data-sortable]").forEach(sortableTable);
    document.querySelectorAll("[data-select-on-focus]").forEach(function (input) {
      input.addEventListener("focus", function () { input.select(); });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
