// bot4 status page: renders /api/events (server-sent events) and offers one action, halt.
// Everything is rendered generically: a key the daemon adds shows up, a key it drops is
// simply not shown. No framework, no CDN; charts by the vendored uPlot.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const SHOWN = new Set(["state", "reason", "latch", "estop", "led", "orders", "positions",
    "market", "watchdog", "version", "operator", "breakers", "risk",
    "failures", "degraded", "journal"]);
  let charts = null, lastT = 0, symbols = [], payload = null;

  function esc(v) {
    return String(v).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
      '"': "&quot;", "'": "&#39;"}[c]));
  }
  function fmt(v) {
    if (v === null || v === undefined) return '<span class="empty">—</span>';
    if (v === true) return '<span class="ok">yes</span>';
    if (v === false) return '<span class="bad">no</span>';
    if (typeof v === "object") return render(v, 1);
    return esc(v);
  }
  function isNum(v) { return typeof v === "number" || (typeof v === "string" && /^-?\d+(\.\d+)?(e-?\d+)?$/i.test(v)); }
  // A dict of dicts becomes a table (one row per key); a dict a key/value table; a list of
  // dicts a table; anything deeper folds into <details>.
  function render(obj, depth) {
    depth = depth || 0;
    if (obj === null || obj === undefined) return '<span class="empty">none</span>';
    if (Array.isArray(obj)) {
      if (!obj.length) return '<span class="empty">none</span>';
      if (obj.every((x) => x && typeof x === "object" && !Array.isArray(x))) {
        if (width(obj) <= 7) return rows(obj, null);
        // Wide records (a breaker's dozen fields): one small table each, not 15 columns.
        // Folded unless something is off (a state other than closed/ok).
        return obj.map((x, i) => '<details class="item"' +
          (x.state && !["closed", "ok"].includes(x.state) ? " open" : "") + "><summary>" +
          esc(x.name || x.id || x.symbol || "#" + (i + 1)) + (x.state ? " · " + esc(x.state) : "") +
          "</summary>" + render(x, depth + 1) + "</details>").join("");
      }
      return obj.map((x) => fmt(x)).join("<br>");
    }
    if (typeof obj !== "object") return fmt(obj);
    const keys = Object.keys(obj);
    if (!keys.length) return '<span class="empty">none</span>';
    if (depth > 2) return "<details><summary>" + keys.length + " keys</summary><pre>" +
      esc(JSON.stringify(obj, null, 1)) + "</pre></details>";
    const vals = keys.map((k) => obj[k]);
    if (vals.every((x) => x && typeof x === "object" && !Array.isArray(x)) && width(vals) <= 7)
      return rows(vals, keys);
    return "<table>" + keys.map((k) => "<tr><th>" + esc(k) + "</th><td" +
      (isNum(obj[k]) ? ' class="num"' : "") + ">" +
      (obj[k] && typeof obj[k] === "object" ? render(obj[k], depth + 1) : fmt(obj[k])) +
      "</td></tr>").join("") + "</table>";
  }
  function width(list) {
    const cols = new Set();
    list.forEach((r) => Object.keys(r).forEach((k) => cols.add(k)));
    return cols.size;
  }
  function rows(list, names) {
    const cols = [];
    list.forEach((r) => Object.keys(r).forEach((k) => { if (!cols.includes(k)) cols.push(k); }));
    let h = "<table><tr>" + (names ? "<th></th>" : "") + cols.map((c) => "<th>" + esc(c) + "</th>").join("") + "</tr>";
    list.forEach((r, i) => {
      h += "<tr>" + (names ? "<th>" + esc(names[i]) + "</th>" : "") + cols.map((c) =>
        "<td" + (isNum(r[c]) ? ' class="num"' : "") + ">" + fmt(r[c]) + "</td>").join("") + "</tr>";
    });
    return h + "</table>";
  }
  function set(id, html) { const el = $(id); if (el && el.innerHTML !== html) el.innerHTML = html; }
  function ago(t) { return t ? new Date(t * 1000).toLocaleTimeString() : ""; }

  function show(p) {
    payload = p;
    const s = p.status || {}, v = p.view || {};
    const st = $("state");
    st.textContent = s.state || "unknown";
    st.dataset.state = s.state || "unknown";
    $("reason").textContent = s.reason || "";
    const pattern = (s.led && s.led.pattern) || "off";
    $("led").className = "led " + pattern;
    $("led").title = "LED: " + pattern;
    document.title = "bot4 · " + (s.state || "?");
    $("version").textContent = s.version || "";
    $("halt-button").disabled = ["estop", "fault", "halted"].includes(s.state);
    const safety = {circuit: s.estop ? (s.estop.circuit_closed ? "closed (healthy)" : "OPEN (pressed or wire broken)") : null,
      latch: s.latch, breakers: s.breakers || v.breaker_states,
      degraded: s.degraded, failures: s.failures, journal: s.journal};
    set("safety-body", render(Object.fromEntries(Object.entries(safety).filter(([, x]) => x !== undefined))));
    const pos = {};
    Object.entries(s.positions || {}).forEach(([sym, d]) => {
      const mine = (v.pnl && v.pnl.symbols && v.pnl.symbols[sym]) || {};
      // The daemon's own unrealized_pnl when it reports one; the view's otherwise.
      pos[sym] = Object.assign({}, d, {mark: mine.mark},
        d.unrealized_pnl === undefined ? {unrealized_pnl: mine.unrealized} : {});
    });
    set("money-body", "<table><tr><th>PnL total</th><td class=num id=pnl-total>" +
      esc(v.pnl ? v.pnl.total : "—") + "</td></tr></table>" + render(pos));
    // The risk engine's own figures when the daemon reports them, else the view's.
    set("limits-body", render(s.risk || v.limits));
    const o = s.orders || {};
    const counts = Object.fromEntries(Object.entries(o).filter(([k]) => k !== "list"));
    set("orders-body", render(o.list || []) + render(counts));
    set("fills-body", render((v.fills || []).map((f) => Object.assign({time: ago(f.at)}, f, {at: undefined}))));
    const m = s.market || {};
    const books = {};
    Object.entries(m.books || {}).forEach(([sym, b]) => {
      books[sym] = Object.assign({age_s: v.market_age_s ? v.market_age_s[sym] : undefined}, b);
    });
    set("market-body", render(books) + render({source: m.source, events: m.events,
      live: m.live, sanity: m.sanity, replay_finished: m.replay_finished}));
    set("watchdog-body", render(s.watchdog));
    set("events-body", render((v.events || []).map((e) => Object.assign({time: ago(e.at)}, e, {at: undefined}))) +
      render(s.operator ? {alerts: s.operator.alerts, web: s.operator.web, loop_lag_s: s.operator.loop_lag_s} : {}));
    const other = {};
    Object.keys(s).forEach((k) => { if (!SHOWN.has(k)) other[k] = s[k]; });
    set("other-body", render(other));
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    if (p.history_last) addPoint(p.history_last);
  }

  // -- charts ----------------------------------------------------------------------------
  function makeCharts(hist) {
    if (typeof uPlot === "undefined") return;
    symbols = [];
    hist.forEach((h) => Object.keys(h[2] || {}).forEach((s) => { if (!symbols.includes(s)) symbols.push(s); }));
    const w = Math.max(260, $("chart-equity").clientWidth);
    const colors = ["#3498db", "#f5a623", "#9b59b6", "#1abc9c"];
    const axes = [{stroke: "#9aa3ab", grid: {stroke: "#2c333b"}}, {stroke: "#9aa3ab", grid: {stroke: "#2c333b"}, size: 70}];
    const eq = [hist.map((h) => h[0]), hist.map((h) => h[1])];
    const pr = [hist.map((h) => h[0])].concat(symbols.map((s) => hist.map((h) => (h[2] || {})[s] ?? null)));
    $("chart-equity").innerHTML = ""; $("chart-price").innerHTML = "";
    charts = {
      data: {eq, pr},
      eq: new uPlot({width: w, height: 170, title: "equity (PnL, quote currency)", axes,
        series: [{}, {label: "PnL", stroke: "#2ecc71", width: 2}]}, eq, $("chart-equity")),
      pr: new uPlot({width: w, height: 170, title: "price (trusted mark)", axes,
        series: [{}].concat(symbols.map((s, i) => ({label: s, stroke: colors[i % 4], width: 1.5})))}, pr, $("chart-price")),
    };
    lastT = hist.length ? hist[hist.length - 1][0] : 0;
  }
  function addPoint(h) {
    if (!charts || h[0] <= lastT) return;
    lastT = h[0];
    if (Object.keys(h[2] || {}).some((s) => !symbols.includes(s))) {
      const hist = charts.data.eq[0].map((t, i) => [t, charts.data.eq[1][i],
        Object.fromEntries(symbols.map((s, j) => [s, charts.data.pr[j + 1][i]]))]);
      hist.push(h); makeCharts(hist); return;
    }
    const d = charts.data, max = 3600;
    d.eq[0].push(h[0]); d.eq[1].push(h[1]);
    d.pr[0].push(h[0]); symbols.forEach((s, j) => d.pr[j + 1].push((h[2] || {})[s] ?? null));
    if (d.eq[0].length > max) { d.eq.forEach((a) => a.shift()); d.pr.forEach((a) => a.shift()); }
    charts.eq.setData(d.eq); charts.pr.setData(d.pr);
  }
  window.addEventListener("resize", () => {
    if (!charts) return;
    const w = Math.max(260, $("chart-equity").clientWidth);
    charts.eq.setSize({width: w, height: 170}); charts.pr.setSize({width: w, height: 170});
  });

  // -- live updates ----------------------------------------------------------------------
  function connect() {
    const es = new EventSource("/api/events");
    es.addEventListener("history", (e) => { try { makeCharts(JSON.parse(e.data)); } catch (err) { console.error(err); } });
    es.addEventListener("status", (e) => {
      $("conn").textContent = "live"; $("conn").className = "conn live";
      try { show(JSON.parse(e.data)); } catch (err) { console.error(err); }
    });
    es.onerror = () => { $("conn").textContent = "reconnecting"; $("conn").className = "conn down"; };
  }

  // -- the one action --------------------------------------------------------------------
  $("halt-button").addEventListener("click", async () => {
    const btn = $("halt-button");
    btn.disabled = true;
    $("halt-result").textContent = "halting…";
    try {
      const r = await fetch("/api/halt", {method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({reason: $("halt-reason").value})});
      const j = await r.json().catch(() => ({}));
      $("halt-result").textContent = r.ok ? "halted (" + (j.result && j.result.state) + ")" :
        "refused: " + (j.error || r.status);
      $("halt-result").className = r.ok ? "ok" : "bad";
    } catch (err) {
      $("halt-result").textContent = "failed: " + err; $("halt-result").className = "bad";
    } finally {
      btn.disabled = payload && ["estop", "fault", "halted"].includes(payload.status.state);
    }
  });
  connect();
})();
