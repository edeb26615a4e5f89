// Charts from the JSON the page carries (no inline script: the CSP allows only files from this origin).
"use strict";
(function () {
  function read(id) { var el = document.getElementById(id); return el ? JSON.parse(el.textContent) : null; }
  function green(share) { return share >= 0.5 ? "#1a7f37" : share >= 0.25 ? "#9a6700" : "#6e7781"; }
  function gridMap(el) {
    var d = read("grid-data"); if (!d || !window.echarts) return;
    var at = {}; d.sites.forEach(function (s) { at[s.name] = [s.lon, s.lat]; });
    var chart = echarts.init(el);
    chart.setOption({
      animation: false,
      tooltip: {},
      xAxis: { type: "value", scale: true, name: "lon" }, yAxis: { type: "value", scale: true, name: "lat" },
      series: [
        { type: "lines", coordinateSystem: "cartesian2d", polyline: false,
          data: d.links.filter(function (k) { return at[k.a] && at[k.b]; }).map(function (k) {
            return { coords: [at[k.a], at[k.b]], name: k.a + " – " + k.b + ": " + k.latency_ms + " ms, " + k.bandwidth_gbps + " Gbit/s",
                     lineStyle: { color: green(k.green_share), width: Math.max(1, Math.min(6, Math.log2(1 + k.bandwidth_gbps))) } };
          }) },
        { type: "scatter", symbolSize: 14, label: { show: true, position: "right", formatter: "{b}" },
          data: d.sites.map(function (s) { return { name: s.name, value: [s.lon, s.lat], itemStyle: { color: green(s.green_share) } }; }) }
      ]
    });
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
