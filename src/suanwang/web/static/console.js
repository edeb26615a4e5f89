// Charts from the JSON the page carries (no inline script: the CSP allows only files from this origin).
"use strict";
(function () {
  function read(id) { var el = document.getElementById(id); return el ? JSON.parse(el.textContent) : null; }
  function green(share) { return share >= 0.5 ? "#1a7f37" : share >= 0.25 ? "#9a6700" : "#6e7781"; }
  function gridMap(el) {
    var d = read("grid-data"); if (!d || !window.echarts) return;
    if (d.background) {
      // the operator's approved map, served by the platform (same origin); without it, plain lon/lat axes
      fetch(d.background, { credentials: "same-origin" }).then(function (r) { return r.ok ? r.json() : null; })
        .then(function (geo) { drawGrid(el, d, geo); }, function () { drawGrid(el, d, null); });
    } else { drawGrid(el, d, null); }
  }
  function drawGrid(el, d, geo) {
    var at = {}; d.sites.forEach(function (s) { at[s.name] = [s.lon, s.lat]; });
    var system = geo ? "geo" : "cartesian2d", option = { animation: false, tooltip: {} };
    if (geo) {
      echarts.registerMap("operator", geo);
      option.geo = { map: "operator", roam: true, silent: true, itemStyle: { areaColor: "#f3f4f6", borderColor: "#9ca3af" } };
    } else {
      option.xAxis = { type: "value", scale: true, name: "lon" }; option.yAxis = { type: "value", scale: true, name: "lat" };
    }
    option.series = [
        { type: "lines", coordinateSystem: system, polyline: false,
          data: d.links.filter(function (k) { return at[k.a] && at[k.b]; }).map(function (k) {
            return { coords: [at[k.a], at[k.b]], name: k.a + " – " + k.b + ": " + k.latency_ms + " ms, " + k.bandwidth_gbps + " Gbit/s",
                     lineStyle: { color: green(k.green_share), width: Math.max(1, Math.min(6, Math.log2(1 + k.bandwidth_gbps))) } };
          }) },
        { type: "scatter", coordinateSystem: system, symbolSize: 14, label: { show: true, position: "right", formatter: "{b}" },
          data: d.sites.map(function (s) { return { name: s.name, value: [s.lon, s.lat], itemStyle: { color: green(s.green_share) } }; }) }
    ];
    echarts.init(el).setOption(option);
  }
  function bars(el) {
    var d = read(el.getAttribute("data-source")); if (!d || !window.echarts) return;
    echarts.init(el).setOption({ animation: false, xAxis: { type: "category", data: d.days }, yAxis: { type: "value" },
      series: [{ type: "bar", data: d.fen.map(function (f) { return f / 100; }) }] });
  }
  function lines(el) {
    // one line per named series of [time, value] points (time axis); the page's table holds the same figures
    var d = read(el.getAttribute("data-source")); if (!d || !window.echarts) return;
    var names = Object.keys(d.series);
    echarts.init(el).setOption({ animation: false, tooltip: { trigger: "axis" }, legend: { data: names },
      xAxis: { type: "time" }, yAxis: { type: "value", scale: true, name: d.unit || "" },
      series: names.map(function (n) { return { name: n, type: "line", step: d.step ? "end" : false, data: d.series[n] }; }) });
  }
  window.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var kind = el.getAttribute("data-chart");
      if (kind === "grid") gridMap(el); else if (kind === "bars") bars(el); else if (kind === "lines") lines(el);
    });
  });
})();
