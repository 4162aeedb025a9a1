// gridhub dashboard: every figure is read from the JSON API with the user's bearer token.
"use strict";

const GH = (window.__gridhub = { charts: {} });
const $ = (sel, root = document) => root.querySelector(sel);
const content = () => $("#content");
const session = {
  get token() { return sessionStorage.getItem("gh.token"); },
  get tenant() { return sessionStorage.getItem("gh.tenant"); },
  get role() { return sessionStorage.getItem("gh.role"); },
  get zone() { return sessionStorage.getItem("gh.zone") || "UTC"; },
};

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === "style") el.setAttribute("style", v);
    else if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) el.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return el;
}

function showError(message) {
  const el = $("#error");
  el.textContent = message;
  el.hidden = false;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${session.token}`, ...(options.headers || {}) };
  const res = await fetch(path, { ...options, headers });
  if (res.status === 401) { logout(); throw new ApiError(401, "signed out"); }
  if (!res.ok) {
    let detail = res.statusText;
    try { const body = await res.json(); detail = body.detail || body.message || JSON.stringify(body); } catch (_) {}
    throw new ApiError(res.status, `${res.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
  return options.raw ? res : res.json();
}

const T = (path) => `/api/v1/tenants/${encodeURIComponent(session.tenant)}${path}`;
const qs = (params) => new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v != null)).toString();

function logout() {
  sessionStorage.clear();
  location.href = "/ui/login?next=" + encodeURIComponent(location.pathname + location.search);
}

// -- dates in the tenant's zone ------------------------------------------------------------------

function localDate(offsetDays = 0) {
  const d = new Date(Date.now() + offsetDays * 86400e3);
  return new Intl.DateTimeFormat("en-CA", { timeZone: session.zone }).format(d); // YYYY-MM-DD
}
function addDays(iso, n) {
  const d = new Date(iso + "T12:00:00Z");
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}
function fmtTime(iso) { return iso.slice(11, 16); }
function fmtNum(v, digits = 3) { return v == null ? "–" : Number(v).toFixed(digits); }
const param = (name, fallback) => new URLSearchParams(location.search).get(name) || fallback;
function setParams(params) {
  const url = new URL(location.href);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  history.replaceState(null, "", url);
}

// -- charts (uPlot, vendored) --------------------------------------------------------------------

const PALETTE = ["#1f6feb", "#d1242f", "#1a7f37", "#bf8700", "#8250df", "#0a7ea4", "#cf222e", "#6e7781"];

function lineChart(key, el, { slots, series, height = 320, stacked = false, scales, onDraw }) {
  const x = slots.map((iso) => Date.parse(iso) / 1000);
  const shown = [];
  const acc = new Array(x.length).fill(0);
  for (const s of series) {
    if (stacked && s.stack) {
      const vals = s.values.map((v, i) => (acc[i] += v ?? 0));
      shown.push(vals);
    } else shown.push(s.values);
  }
  const opts = {
    width: Math.max(480, el.clientWidth || 900),
    height,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), session.zone),
    cursor: { drag: { x: true, y: false } }, // brush: drag over the chart to zoom, double-click resets
    scales: scales || { x: { time: true } },
    axes: [{}, { label: series[0]?.unit || "" }, ...(scales && scales.y2 ? [{ scale: "y2", side: 1, label: series.find((s) => s.scale === "y2")?.unit || "", grid: { show: false } }] : [])],
    series: [
      { label: "time", value: (u, v) => (v == null ? "–" : new Intl.DateTimeFormat("en-GB", { timeZone: session.zone, dateStyle: "short", timeStyle: "short" }).format(new Date(v * 1e3))) },
      ...series.map((s, i) => ({
        label: s.label,
        scale: s.scale || "y",
        stroke: PALETTE[i % PALETTE.length],
        width: 1.5,
        fill: stacked && s.stack ? PALETTE[i % PALETTE.length] + "55" : undefined,
        spanGaps: false,
        value: (u, v, si, idx) => (idx == null ? "–" : fmtNum(s.values[idx], 3) + " " + (s.unit || "")),
      })),
    ],
    hooks: { draw: [(u) => onDraw && onDraw(u)] },
  };
  if (GH.charts[key]) GH.charts[key].destroy();
  el.innerHTML = "";
  const chart = new uPlot(opts, [x, ...shown], el);
  GH.charts[key] = chart;
  return chart;
}

// -- pages ---------------------------------------------------------------------------------------

const pages = {};

pages.login = async () => {
  $("header nav").hidden = true;
  $("#logout").hidden = true;
  const input = h("input", { id: "token", type: "password", placeholder: "gh_…", autocomplete: "off" });
  const form = h("form", { class: "card login" },
    h("p", {}, "Sign in with your gridhub API token. It is kept in this tab only (sessionStorage)."),
    input, h("button", { type: "submit", id: "signin" }, "Sign in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("gh.token", input.value.trim());
    try {
      const who = await api("/api/v1/whoami");
      let tenant = who.tenant;
      if (!tenant) {
        const tenants = await api("/api/v1/tenants");
        if (!tenants.length) throw new Error("no tenants on this hub yet");
        tenant = tenants[0].id;
      }
      const info = await api(`/api/v1/tenants/${encodeURIComponent(tenant)}`);
      sessionStorage.setItem("gh.tenant", tenant);
      sessionStorage.setItem("gh.role", who.role);
      sessionStorage.setItem("gh.installation", who.tenant ? "" : "1");
      sessionStorage.setItem("gh.zone", info.timezone);
      const next = param("next", "/ui/overview");
      location.href = next.startsWith("/ui/") && !next.startsWith("/ui/login") ? next : "/ui/overview";
    } catch (err) {
      sessionStorage.clear();
      showError(err.status === 401 || err.message === "signed out" ? "unknown or revoked token" : err.message);
    }
  });
  content().append(form);
};

pages.overview = async () => {
  const data = await api(T("/reports/overview"));
  const groups = Object.entries(data.groups).map(([attr, counts]) =>
    h("div", { class: "card" }, h("h2", {}, attr.replace("_", " ")),
      h("table", {}, Object.entries(counts).map(([v, n]) => h("tr", {}, h("td", {}, v), h("td", { class: "num" }, n))))));
  const rate = h("span", { id: "ingest-rate", class: "big" }, data.ingest.per_second.toFixed(2));
  content().append(
    h("div", { class: "cards" },
      h("div", { class: "card" }, h("div", { class: "muted" }, "households"), h("div", { class: "big", id: "households" }, data.households)),
      h("div", { class: "card" }, h("div", { class: "muted" }, "devices"), h("div", { class: "big" }, Object.values(data.devices).reduce((a, b) => a + b, 0)),
        h("div", { class: "muted" }, Object.entries(data.devices).map(([k, v]) => `${k} ${v}`).join(" · "))),
      h("div", { class: "card" }, h("div", { class: "muted" }, `readings/s (last ${data.ingest.window_s / 60} min)`), rate,
        h("div", { class: "muted", id: "pipeline-rate" }, data.ingest.pipeline_per_second != null ? `hub pipeline ${data.ingest.pipeline_per_second.toFixed(1)}/s` : ""))),
    h("h2", {}, "Households by group"), h("div", { class: "cards" }, groups),
    h("h2", {}, "Data completeness, last 7 days"), h("div", { id: "heat" }),
    h("h2", {}, "Recent alerts"),
    data.recent_alerts.length
      ? h("table", { id: "alerts" }, h("tr", {}, ["time", "device", "level", "type", "message"].map((c) => h("th", {}, c))),
          data.recent_alerts.map((a) => h("tr", {}, h("td", {}, a.ts.slice(0, 16).replace("T", " ")), h("td", {}, a.device), h("td", {}, a.level), h("td", {}, a.type), h("td", {}, a.message))))
      : h("p", { id: "alerts", class: "muted" }, "no alerts"));
  await renderHeatmap($("#heat"), { threshold: 0.9, compact: true });
  GH.ready = true;
  const poll = setInterval(async () => {
    try {
      const d = await api(T("/reports/overview"));
      rate.textContent = d.ingest.per_second.toFixed(2);
      if (d.ingest.pipeline_per_second != null) $("#pipeline-rate").textContent = `hub pipeline ${d.ingest.pipeline_per_second.toFixed(1)}/s`;
    } catch (_) { clearInterval(poll); }
  }, 5000);
};

async function sitesSelect(current) {
  const sites = await api(T("/sites"));
  const select = h("select", { id: "site" }, sites.map((s) => h("option", { value: s.id, selected: s.id === current }, `${s.id} ${s.location ? "· " + s.location : ""}`)));
  return { select, first: sites[0]?.id };
}

pages.household = async () => {
  const t0 = performance.now();
  const day = param("day", localDate(-1));
  const days = Number(param("days", "1"));
  const stacked = param("mode", "overlaid") === "stacked";
  let site = param("site", null);
  let sitesP = null;
  if (!site) {
    sitesP = api(T("/sites"));
    site = (await sitesP)[0]?.id;
    if (!site) { content().append(h("p", {}, "no households registered")); return; }
  }
  // the day's data first: the household list only fills the selector, after the chart is drawn
  const data = await api(T(`/reports/household/${encodeURIComponent(site)}?`) + qs({ day, days }));
  GH.householdData = performance.now();
  const series = data.series.map((s) => ({
    label: `${s.device} ${s.identifier.includes("injected") ? "injected" : ""}`.trim(),
    unit: s.unit, values: s.values, device: s.device, identifier: s.identifier,
    stack: !s.device.endsWith("-meter"),
  }));
  GH.household = { site, day, days, slots: data.slots, series: data.series };
  const go = (p) => { setParams(p); location.reload(); };
  const siteSelect = h("select", { id: "site", on: { change: (e) => go({ site: e.target.value }) } },
    h("option", { value: site, selected: true }, site));
  const controls = h("div", { class: "controls" }, siteSelect,
    h("button", { id: "prev", on: { click: () => go({ site, day: addDays(day, -days) }) } }, "◀"),
    h("input", { id: "day", type: "date", value: day, on: { change: (e) => go({ site, day: e.target.value }) } }),
    h("button", { id: "next", on: { click: () => go({ site, day: addDays(day, days) }) } }, "▶"),
    h("select", { id: "span", on: { change: (e) => go({ site, day, days: e.target.value }) } },
      h("option", { value: 1, selected: days === 1 }, "day"), h("option", { value: 7, selected: days === 7 }, "week")),
    h("select", { id: "mode", on: { change: (e) => go({ site, day, mode: e.target.value }) } },
      h("option", { value: "overlaid", selected: !stacked }, "overlaid"), h("option", { value: "stacked", selected: stacked }, "plugs stacked")),
    h("span", { class: "muted" }, `${data.site.location} · ${data.site.experiment} · ${data.site.has_pv ? "PV" : "no PV"} · ${data.slots.length} quarter-hours (${data.timezone}); drag to zoom, double-click to reset`));
  const chartEl = h("div", { id: "chart" });
  content().append(controls, chartEl);
  lineChart("household", chartEl, {
    slots: data.slots, series, stacked,
    onDraw: () => {
      if (!GH.householdDrawn) {
        GH.householdDrawn = performance.now();
        GH.householdScript = t0;
        performance.mark("household-drawn");
      }
    },
  });
  const sites = await (sitesP || api(T("/sites")));
  siteSelect.replaceChildren(...sites.map((s) => h("option", { value: s.id, selected: s.id === site }, s.id)));
  GH.ready = true;
};

pages.devices = async () => {
  const day = param("day", localDate(-1));
  const { select, first } = await sitesSelect(param("site", null));
  const site = param("site", first);
  const data = await api(T(`/reports/timelines/${encodeURIComponent(site)}?`) + qs({ day }));
  GH.timelines = data;
  const go = (p) => { setParams(p); location.reload(); };
  select.addEventListener("change", (e) => go({ site: e.target.value }));
  content().append(h("div", { class: "controls" }, select,
    h("button", { id: "prev", on: { click: () => go({ site, day: addDays(day, -1) }) } }, "◀"),
    h("input", { id: "day", type: "date", value: day, on: { change: (e) => go({ site, day: e.target.value }) } }),
    h("button", { id: "next", on: { click: () => go({ site, day: addDays(day, 1) }) } }, "▶")));
  content().append(h("h2", {}, "Boiler: state of charge and temperature"));
  if (data.boilers.length) {
    const el = h("div", { id: "boiler-chart" });
    content().append(el);
    lineChart("boiler", el, {
      slots: data.slots, height: 260,
      scales: { x: { time: true }, y: {}, y2: {} },
      series: data.boilers.map((s) => ({ label: `${s.device} ${s.identifier.split(".").pop()}`, unit: s.unit, values: s.values, scale: s.identifier.endsWith("temperature") ? "y2" : "y" })),
    });
  } else content().append(h("p", { class: "muted", id: "boiler-chart" }, "this household has no boiler"));
  // a time of the page's day as HH:MM, another day's as MM-DD HH:MM (deadlines past midnight)
  const at = (iso) => (iso == null ? "–" : iso.slice(0, 10) === day ? fmtTime(iso) : `${iso.slice(5, 10)} ${fmtTime(iso)}`);
  const cycles = data.whitegoods.flatMap((w) => w.cycles.map((c) => ({ w, c })));
  content().append(h("h2", {}, "Whitegood cycles"),
    h("p", { class: "muted" }, "What each smart appliance reported: when the user configured it, the deadline set, the program and the actual start; end and energy from the run its plug measured."),
    cycles.length
      ? h("table", { id: "cycles" }, h("tr", {}, ["appliance", "device", "program", "configured", "deadline", "start", "end", "energy kWh"].map((c) => h("th", {}, c))),
        cycles.map(({ w, c }) => h("tr", { class: "cycle" }, h("td", {}, w.appliance), h("td", {}, w.device), h("td", { class: "program" }, c.program ?? "–"),
          h("td", { class: "configured" }, at(c.configured_at)), h("td", { class: "deadline" }, at(c.deadline)), h("td", { class: "started" }, at(c.started_at)),
          h("td", { class: "end" }, c.run ? at(c.run.end) : "–"), h("td", { class: "num" }, c.run ? fmtNum(c.run.energy_kwh) : "–"))))
      : h("p", { class: "muted", id: "cycles" }, "no appliance reported a cycle this day"));
  content().append(h("h2", {}, "Whitegood runs"),
    h("p", { class: "muted" }, "Runs found in each plug's quarter-hour power (above 0.05 kW), also for appliances that report nothing themselves."),
    h("table", { id: "runs" }, h("tr", {}, ["appliance", "device", "start", "end", "energy kWh", "peak kW"].map((c) => h("th", {}, c))),
      data.whitegoods.flatMap((w) => w.runs.length
        ? w.runs.map((r) => h("tr", {}, h("td", {}, w.appliance), h("td", {}, w.device), h("td", {}, fmtTime(r.start)), h("td", {}, fmtTime(r.end)), h("td", { class: "num" }, fmtNum(r.energy_kwh)), h("td", { class: "num" }, fmtNum(r.peak_kw))))
        : [h("tr", {}, h("td", {}, w.appliance), h("td", {}, w.device), h("td", { colspan: 4, class: "muted" }, "no run this day"))])));
  GH.ready = true;
};

pages.aggregates = async () => {
  const to = param("to", localDate(-1));
  const from = param("from", addDays(to, -6));
  const go = (p) => { setParams(p); location.reload(); };
  content().append(h("div", { class: "controls" },
    "from", h("input", { id: "from", type: "date", value: from, on: { change: (e) => go({ from: e.target.value, to }) } }),
    "to", h("input", { id: "to", type: "date", value: to, on: { change: (e) => go({ from, to: e.target.value }) } })));
  const data = await api(T("/reports/aggregates?") + qs({ from, to }));
  GH.aggregates = data;
  const max = Math.max(1e-9, ...data.by_appliance.map((r) => r.consumed_kwh));
  const table = (rows, id, first) => h("table", { id },
    h("tr", {}, [first, "households", "devices", "consumed kWh", "", "injected kWh"].map((c) => h("th", {}, c))),
    rows.map((r) => h("tr", {}, h("td", {}, r.value), h("td", { class: "num" }, r.households || ""), h("td", { class: "num" }, r.devices),
      h("td", { class: "num" }, fmtNum(r.consumed_kwh, 1)), h("td", {}, h("span", { class: "bar", style: `width:${(100 * r.consumed_kwh) / max}px` })),
      h("td", { class: "num" }, fmtNum(r.injected_kwh, 1)))));
  content().append(h("h2", {}, "Per appliance type"), table(data.by_appliance, "by-appliance", "appliance"));
  const groups = {};
  for (const r of data.by_group) (groups[r.group] ||= []).push(r);
  for (const [g, rows] of Object.entries(groups)) content().append(h("h2", {}, `Per household group: ${g.replace("_", " ")}`), table(rows, `by-${g}`, g));
  GH.ready = true;
};

function heatColour(ratio, threshold) {
  if (ratio >= 0.999) return "#1a7f37";
  if (ratio >= threshold) return "#7cc48a";
  if (ratio > 0) return "#f0a35e";
  return "#d1242f";
}

async function renderHeatmap(root, { threshold, from, to, compact }) {
  const data = await api(T("/reports/completeness?") + qs({ from, to, threshold }));
  GH.completeness = data;
  const pct = data.expected_total ? ((100 * data.received_total) / data.expected_total).toFixed(2) : "100";
  const table = h("table", { class: "heatmap", id: "heatmap" },
    h("tr", {}, h("th", {}, "device"), data.days.map((d) => h("th", {}, d.slice(5)))),
    data.devices.map((dev) => h("tr", { "data-device": dev.device },
      h("th", {}, dev.device),
      dev.received.map((r, i) => {
        const e = dev.expected[i];
        const ratio = e ? r / e : 1;
        return h("td", {
          class: e && ratio < threshold ? "warn" : "", style: `background:${heatColour(ratio, threshold)}`,
          title: `${dev.device} ${data.days[i]}: ${r} / ${e}`, "data-day": data.days[i], "data-received": r, "data-expected": e,
          on: { click: () => drill(dev.device, data.days[i]) },
        }, compact ? "" : r);
      }))));
  root.append(h("p", { id: "completeness-summary" },
    `${data.received_total} of ${data.expected_total} slots received (${pct} %); `,
    h("strong", { id: "warning-count" }, data.warnings.length), ` devices below ${Math.round(threshold * 100)} % on some day`),
    h("div", { class: "scroll" }, table), h("div", { id: "missing" }));
  return data;
}

async function drill(device, day) {
  const data = await api(T(`/reports/completeness/${encodeURIComponent(device)}/missing?`) + qs({ day }));
  const box = $("#missing");
  box.innerHTML = "";
  box.append(h("h2", {}, `${device} on ${day}: ${data.received} / ${data.expected}`),
    data.missing.length
      ? h("p", { id: "missing-list" }, data.missing.map(fmtTime).join(", ") + (data.truncated ? " …" : ""))
      : h("p", { id: "missing-list" }, "no slot missing"));
}

pages.completeness = async () => {
  const to = param("to", localDate(0));
  const from = param("from", addDays(to, -13));
  const threshold = Number(param("threshold", "0.9"));
  const go = (p) => { setParams(p); location.reload(); };
  content().append(h("div", { class: "controls" },
    "from", h("input", { id: "from", type: "date", value: from, on: { change: (e) => go({ from: e.target.value }) } }),
    "to", h("input", { id: "to", type: "date", value: to, on: { change: (e) => go({ to: e.target.value }) } }),
    "warn below", h("input", { id: "threshold", type: "number", min: 0, max: 100, step: 1, value: Math.round(threshold * 100), on: { change: (e) => go({ threshold: Number(e.target.value) / 100 }) } }), "%"));
  const root = h("div", {});
  content().append(root);
  const data = await renderHeatmap(root, { threshold, from, to });
  content().append(h("h2", {}, "Devices with warnings"),
    data.warnings.length ? h("ul", { id: "warnings" }, data.devices.filter((d) => d.warning_days.length).map((d) =>
      h("li", {}, `${d.device}: ${(100 * d.ratio).toFixed(1)} %, low on ${d.warning_days.join(", ")}`))) : h("p", { id: "warnings" }, "none"));
  GH.ready = true;
};

pages.tariffs = async () => {
  const month = param("month", localDate(0).slice(0, 7));
  const site = param("site", "");
  const first = `${month}-01`;
  const last = addDays(addDays(first, 32).slice(0, 8) + "01", -1);
  const go = (p) => { setParams(p); location.reload(); };
  const sites = await api(T("/sites"));
  content().append(h("div", { class: "controls" },
    "month", h("input", { id: "month", type: "month", value: month, on: { change: (e) => go({ month: e.target.value }) } }),
    "household", h("select", { id: "tariff-site", on: { change: (e) => go({ site: e.target.value }) } },
      h("option", { value: "" }, "all"), sites.map((s) => h("option", { value: s.id, selected: s.id === site }, s.id)))));
  const target = (t) => (t.attribute ? `${t.attribute} = ${t.value}` : `${t.sites.length} household(s)`);
  const sections = [
    ["tariffs", "Tariffs", { from: first, to: last, site },
      ["day", "kind", "target", "periods", "unit", "published"],
      (r) => [r.day, r.kind, target(r.target), r.periods.map((p) => `${p.start}–${p.end} ${p.price}${p.label ? " (" + p.label + ")" : ""}`).join(" · "), r.unit, r.published.slice(0, 16)]],
    ["control-signals", "Control signals", { from: `${first}T00:00:00Z`, to: `${addDays(last, 1)}T00:00:00Z`, site },
      ["direction", "limit kW", "start", "end", "target", "households", "issuer"],
      (r) => [r.direction, r.limit_kw, r.start.slice(0, 16), r.end ? r.end.slice(0, 16) : "until replaced", target(r.target), r.sites.length, r.issuer]],
  ];
  for (const [path, title, params, cols, row] of sections) {
    const box = h("div", { class: "card", id: path }, h("h2", {}, `${title}, ${month}`));
    content().append(box);
    try {
      const rows = await api(T(`/${path}?`) + qs(params));
      box.append(rows.length
        ? h("table", {}, h("tr", {}, cols.map((c) => h("th", {}, c))), rows.map((r) => h("tr", {}, row(r).map((v) => h("td", {}, v)))))
        : h("p", { class: "muted" }, `no ${title.toLowerCase()}`));
    } catch (err) {
      box.append(h("p", { class: "muted" }, err.status === 404 ? `no ${title.toLowerCase()}: this hub has no ${path} API` : err.message));
    }
  }
  const overview = await api(T("/reports/overview"));
  content().append(h("div", { class: "card", id: "experiments" }, h("h2", {}, "Experiments"),
    h("p", { class: "muted" }, "Households per experiment, from the site registry."),
    h("table", {}, Object.entries(overview.groups.experiment || {}).map(([k, v]) => h("tr", {}, h("td", {}, k || "(none)"), h("td", { class: "num" }, v))))));
  GH.ready = true;
};

function table(rows) {
  const cols = Object.keys(rows[0] || {});
  return h("table", {}, h("tr", {}, cols.map((c) => h("th", {}, c))),
    rows.map((r) => h("tr", {}, cols.map((c) => h("td", {}, typeof r[c] === "object" ? JSON.stringify(r[c]) : r[c])))));
}

async function download(path, filename) {
  const res = await api(path, { raw: true, ...(arguments[2] || {}) });
  const blob = await res.blob();
  const a = h("a", { href: URL.createObjectURL(blob), download: filename });
  document.body.append(a);
  a.click();
  a.remove();
}

pages.export = async () => {
  const day = param("day", localDate(-1));
  const sites = await api(T("/sites"));
  const views = {
    household: "household day (site, day)", timelines: "device timelines (site, day)", aggregates: "aggregates (from, to)",
    completeness: "completeness (from, to)",
  };
  const view = h("select", { id: "view" }, Object.entries(views).map(([k, v]) => h("option", { value: k }, v)));
  const site = h("select", { id: "export-site" }, sites.map((s) => h("option", { value: s.id }, s.id)));
  const from = h("input", { id: "export-from", type: "date", value: addDays(day, -6) });
  const to = h("input", { id: "export-to", type: "date", value: day });
  const fmt = h("select", { id: "format" }, h("option", { value: "csv" }, "CSV"), h("option", { value: "parquet" }, "Parquet"));
  const button = h("button", { id: "download", on: { click: async () => {
    const v = view.value;
    const params = v === "household" || v === "timelines" ? { site: site.value, day: to.value } : { from: from.value, to: to.value };
    try { await download(T(`/reports/export/${v}?`) + qs({ ...params, format: fmt.value }), `${session.tenant}-${v}.${fmt.value}`); }
    catch (err) { showError(err.message); }
  } } }, "Download");
  content().append(h("div", { class: "card" }, h("h2", {}, "Export a view"),
    h("div", { class: "controls" }, view, "site", site, "from", from, "to / day", to, fmt, button)));
  const box = h("div", { class: "card", id: "sql-box" }, h("h2", {}, "SQL console (read-only)"));
  content().append(box);
  if (!["researcher", "admin"].includes(session.role)) {
    box.append(h("p", { class: "muted", id: "sql-denied" }, "The SQL console is for researcher and admin tokens."));
    GH.ready = true;
    return;
  }
  const text = h("textarea", { id: "sql", rows: 6 }, "SELECT device, count(*) AS readings, round(avg(value), 3) AS mean\nFROM measurements\nWHERE identifier = 'electricity.power.active.consumed.total'\nGROUP BY device ORDER BY device LIMIT 20");
  const out = h("div", { id: "sql-result", class: "scroll" });
  const body = () => JSON.stringify({ sql: text.value, limit: 1000 });
  box.append(h("p", { class: "muted" }, "Views: measurements, state, alerts, devices, sites, identifiers — this tenant's rows only; 10 s and 10,000 rows at most."), text,
    h("div", { class: "controls" },
      h("button", { id: "run-sql", on: { click: async () => {
        out.innerHTML = "";
        try {
          const r = await api(T("/sql"), { method: "POST", headers: { "Content-Type": "application/json" }, body: body() });
          GH.sql = r;
          const rows = r.rows.map((row) => Object.fromEntries(r.columns.map((c, i) => [c, row[i]])));
          out.append(h("p", { class: "muted" }, `${r.rows.length} rows${r.truncated ? " (truncated)" : ""} in ${r.seconds} s`), rows.length ? table(rows) : "");
        } catch (err) { out.append(h("p", { class: "error" }, err.message)); }
      } } }, "Run"),
      h("button", { id: "sql-csv", on: { click: () => download(T("/sql?format=csv"), "query.csv", { method: "POST", headers: { "Content-Type": "application/json" }, body: body() }).catch((e) => showError(e.message)) } }, "CSV"),
      h("button", { id: "sql-parquet", on: { click: () => download(T("/sql?format=parquet"), "query.parquet", { method: "POST", headers: { "Content-Type": "application/json" }, body: body() }).catch((e) => showError(e.message)) } }, "Parquet")),
    out);
  GH.ready = true;
};

// the installation admin may read every tenant: a selector in the header switches between them
async function tenantSwitcher() {
  const tenants = await api("/api/v1/tenants");
  const select = h("select", { id: "tenant", on: { change: async (e) => {
    const info = await api(`/api/v1/tenants/${encodeURIComponent(e.target.value)}`);
    sessionStorage.setItem("gh.tenant", info.id);
    sessionStorage.setItem("gh.zone", info.timezone);
    location.href = location.pathname;
  } } }, tenants.map((t) => h("option", { value: t.id, selected: t.id === session.tenant }, t.id)));
  $("#who").replaceChildren(select, " · installation admin");
}

// -- start ---------------------------------------------------------------------------------------

async function start() {
  const page = document.body.dataset.page;
  if (page !== "login" && !session.token) { logout(); return; }
  if (page !== "login") {
    $("#who").textContent = `${session.tenant} · ${session.role}`;
    if (sessionStorage.getItem("gh.installation")) tenantSwitcher();
    $("#logout").addEventListener("click", logout);
    document.querySelector(`[data-nav="${page}"]`)?.classList.add("active");
  }
  try { await pages[page](); }
  catch (err) { if (err.message !== "signed out") showError(err.message); }
}

document.addEventListener("DOMContentLoaded", start);
