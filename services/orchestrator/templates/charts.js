// Small SVG charts drawn by hand (no libraries, no network). Points are <circle class="pt"> with
// their values in data-* attributes, so tests and people can check what is drawn.
const COLORS = ["#2f6fde", "#e8590c", "#12b76a", "#7a5af8", "#f04438"];
const esc = s => String(s).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const fmt = (v, d = 4) => v == null || Number.isNaN(Number(v)) ? "–" : Number(v).toFixed(d);
const $ = sel => document.querySelector(sel);

function frame(xs, values, W, H, box) {
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  if (x0 === x1) { x0 -= 0.5; x1 += 0.5; }
  let [y0, y1] = [Math.min(...values), Math.max(...values)];
  const pad = (y1 - y0) * 0.15 || Math.abs(y1) * 0.1 || 1;
  [y0, y1] = [box.zero ? Math.min(0, y0) : y0 - pad, y1 + pad];
  const X = x => box.L + (x - x0) / (x1 - x0) * (W - box.L - box.R);
  const Y = y => box.T + (1 - (y - y0) / (y1 - y0)) * (H - box.T - box.B);
  let s = "";
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (y1 - y0) * i / 4;
    s += `<line x1="${box.L}" x2="${W - box.R}" y1="${Y(y)}" y2="${Y(y)}" stroke="#eef0f3"/>` +
         `<text x="${box.L - 6}" y="${Y(y) + 4}" text-anchor="end">${y.toFixed(box.digits)}</text>`;
  }
  return {X, Y, grid: s};
}

function lineChart(el, {xs, series, xLabel = "iteration", digits = 3, baseline = true}) {
  const W = 420, H = 220, box = {L: 56, R: 14, T: 26, B: 40, digits};
  const all = series.flatMap(s => s.values.filter(p => p[1] != null));
  if (!all.length) { el.innerHTML = '<p class="muted">no data yet</p>'; return; }
  const {X, Y, grid} = frame(xs, all.map(p => p[1]), W, H, box);
  let s = `<svg viewBox="0 0 ${W} ${H}" width="100%" role="img">${grid}`;
  for (const x of xs) s += `<text x="${X(x)}" y="${H - box.B + 16}" text-anchor="middle">${x}</text>`;
  s += `<text x="${(box.L + W - box.R) / 2}" y="${H - 6}" text-anchor="middle">${xLabel}</text>`;
  series.forEach((ser, i) => {
    const c = COLORS[i % COLORS.length], v = ser.values.filter(p => p[1] != null);
    if (baseline && v.length > 1) {
      s += `<line class="baseline" x1="${box.L}" x2="${W - box.R}" y1="${Y(v[0][1])}" y2="${Y(v[0][1])}" ` +
           `stroke="${c}" stroke-dasharray="4 4" opacity=".55"/>`;
    }
    s += `<polyline fill="none" stroke="${c}" stroke-width="2" points="${v.map(p => X(p[0]) + "," + Y(p[1])).join(" ")}"/>`;
    for (const p of v) {
      s += `<circle class="pt" data-series="${esc(ser.name)}" data-x="${p[0]}" data-y="${p[1]}" cx="${X(p[0])}" ` +
           `cy="${Y(p[1])}" r="4" fill="${c}"><title>${esc(ser.name)}, ${xLabel} ${p[0]}: ${fmt(p[1], 5)}</title></circle>`;
    }
    s += `<rect x="${box.L + i * 120}" y="6" width="10" height="10" fill="${c}"/>` +
         `<text x="${box.L + 14 + i * 120}" y="15">${esc(ser.name)}</text>`;
  });
  el.innerHTML = s + "</svg>";
}

function stackedBars(el, {groups, keys, names, xLabel}) {
  const W = 420, H = 220, box = {L: 56, R: 14, T: 26, B: 40, digits: 0, zero: true};
  if (!groups.length) { el.innerHTML = '<p class="muted">no generation pass yet</p>'; return; }
  const totals = groups.map(g => keys.reduce((a, k) => a + (g.values[k] || 0), 0));
  const {X, Y, grid} = frame([-0.5, groups.length - 0.5], [0, ...totals], W, H, box);  // one band per group
  const width = Math.min(60, (W - box.L - box.R) / (groups.length + 1) * 0.6);
  let s = `<svg viewBox="0 0 ${W} ${H}" width="100%" role="img">${grid}`;
  groups.forEach((g, i) => {
    let base = 0;
    keys.forEach((k, j) => {
      const v = g.values[k] || 0;
      s += `<rect class="bar" data-key="${k}" data-x="${esc(g.label)}" data-y="${v}" x="${X(i) - width / 2}" ` +
           `y="${Y(base + v)}" width="${width}" height="${Math.max(0, Y(base) - Y(base + v))}" fill="${COLORS[j]}">` +
           `<title>${names[j]}: ${v}</title></rect>`;
      base += v;
    });
    s += `<text x="${X(i)}" y="${H - box.B + 16}" text-anchor="middle">${esc(g.label)}</text>` +
         `<text x="${X(i)}" y="${Y(base) - 4}" text-anchor="middle">${esc(g.note || "")}</text>`;
  });
  keys.forEach((k, j) => {
    s += `<rect x="${box.L + j * 110}" y="6" width="10" height="10" fill="${COLORS[j]}"/>` +
         `<text x="${box.L + 14 + j * 110}" y="15">${names[j]}</text>`;
  });
  s += `<text x="${(box.L + W - box.R) / 2}" y="${H - 6}" text-anchor="middle">${xLabel}</text>`;
  el.innerHTML = s + "</svg>";
}
