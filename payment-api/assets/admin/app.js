// The operator's page: everything it shows comes from the admin API with the token the
// operator typed, kept for this browser tab only (sessionStorage).
"use strict";

const $ = (selector) => document.querySelector(selector);
const SVG = "http://www.w3.org/2000/svg";
let token = sessionStorage.getItem("adminToken");
let pendingAction = null;

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: Object.assign(
      { Authorization: "Bearer " + token },
      body ? { "Content-Type": "application/json" } : {}
    ),
    body: body ? JSON.stringify(body) : undefined,
  });
  const payload = await response.json().catch(() => ({}));
  if (response.status === 401) {
    logout("That token was refused.");
    throw new Error("unauthorized");
  }
  if (!response.ok) throw new Error(payload.message || "HTTP " + response.status);
  return payload.data;
}

function shanghaiToday() {
  const now = new Date(Date.now() + 8 * 3600 * 1000);
  return now.toISOString().slice(0, 10);
}

function daysBefore(day, n) {
  const d = new Date(day + "T00:00:00Z");
  d.setUTCDate(d.getUTCDate() - n);
  return d.toISOString().slice(0, 10);
}

function element(tag, attributes, text) {
  const node = document.createElement(tag);
  Object.entries(attributes || {}).forEach(([k, v]) => node.setAttribute(k, v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function svgElement(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  Object.entries(attributes).forEach(([k, v]) => node.setAttribute(k, v));
  if (text !== undefined) node.textContent = text;
  return node;
}

// Grouped bars: one group per item, one bar per series; each bar carries its value.
function barChart(svg, items, label, series) {
  svg.replaceChildren();
  const width = svg.clientWidth || 800;
  const height = svg.clientHeight || 180;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const max = Math.max(1, ...items.flatMap((item) => series.map((s) => item[s.key])));
  const slot = (width - 20) / Math.max(1, items.length);
  const bar = Math.max(1, (slot - 2) / series.length);
  const every = Math.ceil(items.length / 16);
  items.forEach((item, i) => {
    series.forEach((s, j) => {
      const value = item[s.key];
      const h = Math.round((value / max) * (height - 30));
      const rect = svgElement("rect", {
        x: 10 + i * slot + j * bar, y: height - 18 - h, width: bar, height: h,
        class: s.key === "ordersPaid" ? "paid" : "created",
        "data-label": label(item), "data-series": s.key, "data-value": value,
      });
      rect.appendChild(svgElement("title", {}, `${label(item)}: ${value} ${s.name}`));
      svg.appendChild(rect);
    });
    if (i % every === 0) {
      svg.appendChild(svgElement("text", { x: 10 + i * slot, y: height - 4 }, label(item)));
    }
  });
}

const TILES = [
  ["ordersCreated", "Orders created"],
  ["ordersPaid", "Orders paid"],
  ["paymentSuccessRate", "Paid / created"],
  ["paidYuan", "Paid ¥"],
  ["paidMnt", "Bought, MNT"],
  ["rechargeSuccess", "Credited"],
  ["rechargeFailed", "Failed"],
  ["rechargeUnknown", "Unknown"],
  ["rechargePending", "In progress"],
  ["refundsSucceeded", "Refunded"],
  ["refundedYuan", "Refunded ¥"],
  ["refundsFailed", "Refunds failed"],
];

function renderStats(stats) {
  const tiles = $("#tiles");
  tiles.replaceChildren();
  const add = (key, name, value) => {
    const tile = element("div", { class: "tile", "data-figure": key });
    tile.append(element("div", { class: "label" }, name), element("div", { class: "value" }, value));
    tiles.appendChild(tile);
  };
  TILES.forEach(([key, name]) => {
    const value = stats.totals[key];
    add(key, name, value === null ? "–" : String(value));
  });
  add("newCustomers", "New customers", String(stats.customers.new));
  add("returningCustomers", "Returning customers", String(stats.customers.returning));

  const series = [
    { key: "ordersCreated", name: "created" },
    { key: "ordersPaid", name: "paid" },
  ];
  barChart($("#chart-days"), stats.perDay, (d) => d.day.slice(5), series);
  barChart($("#chart-hours"), stats.perHourOfDay, (h) => String(h.hour).padStart(2, "0"), series);

  const rows = stats.perProduct.map((p) => {
    const tr = element("tr", { "data-product": p.productCode });
    [p.productName, p.rechargeType, p.ordersCreated, p.ordersPaid, p.paidYuan,
     p.rechargeSuccess, p.rechargeFailed, p.rechargeUnknown]
      .forEach((v) => tr.appendChild(element("td", {}, String(v))));
    return tr;
  });
  $("#products tbody").replaceChildren(...rows);
}

const WHY = {
  unknown: "top-up outcome unknown",
  failed_not_refunded: "top-up failed, not refunded",
  refund_failed: "refund failed",
};

function renderAttention(list) {
  $("#attention-count").textContent = list.total ? `(${list.total})` : "";
  const rows = list.orders.map((o) => {
    const tr = element("tr", { "data-order": o.orderNumber });
    [o.orderNumber, o.phoneNumber, o.productName, o.amountYuan,
     WHY[o.needs] + (o.detail ? ": " + o.detail : ""), o.paidAt ? o.paidAt.slice(0, 19).replace("T", " ") : ""]
      .forEach((v) => tr.appendChild(element("td", {}, String(v))));
    const cell = element("td");
    const kind = o.needs === "unknown" ? "resolve" : o.needs === "refund_failed" ? "retry" : "refund";
    const button = element("button", { class: kind, type: "button" },
      { resolve: "Resolve", retry: "Retry refund", refund: "Refund" }[kind]);
    button.addEventListener("click", () => openAction(kind, o.orderNumber));
    cell.appendChild(button);
    tr.appendChild(cell);
    return tr;
  });
  $("#attention tbody").replaceChildren(...rows);
}

function openAction(kind, orderNumber) {
  pendingAction = { kind, orderNumber };
  $("#action-title").textContent =
    { resolve: "Resolve ", retry: "Retry the refund of ", refund: "Refund " }[kind] + orderNumber;
  $("#outcome-label").hidden = kind !== "resolve";
  $("#note").value = "";
  $("#action-form").hidden = false;
  $("#note").focus();
}

async function submitAction(event) {
  event.preventDefault();
  const { kind, orderNumber } = pendingAction;
  const note = $("#note").value;
  try {
    if (kind === "resolve") {
      await api("POST", `/admin/orders/${orderNumber}/resolve`, { outcome: $("#outcome").value, note });
    } else if (kind === "refund") {
      await api("POST", "/payment/refund", { orderNumber, reason: note });
    } else {
      await api("POST", `/admin/refunds/${orderNumber}/retry`, { note });
    }
    $("#action-result").textContent = `${orderNumber}: done.`;
    $("#action-form").hidden = true;
    await load();
  } catch (error) {
    $("#action-result").textContent = `${orderNumber}: ${error.message}`;
  }
}

function renderReconciliation(view) {
  const open = view.days.reduce((sum, d) => sum + d.differencesOpen, 0);
  $("#reconciliation-open").textContent = open ? `(${open} open)` : "";
  const rows = view.days.map((d) => {
    const tr = element("tr", { "data-day": d.date, class: "status-" + d.status });
    [d.date, d.status + (d.lastError ? ": " + d.lastError : ""), d.billLines, d.linesMatched,
     d.differencesOpen, d.differencesResolved,
     d.reconciledAt ? d.reconciledAt.slice(0, 19).replace("T", " ") : ""]
      .forEach((v) => tr.appendChild(element("td", {}, String(v))));
    const cell = element("td");
    const button = element("button", { class: "show-day", type: "button" }, "Show");
    button.addEventListener("click", () => showDay(d.date));
    cell.appendChild(button);
    tr.appendChild(cell);
    return tr;
  });
  $("#reconciliation tbody").replaceChildren(...rows);
}

async function showDay(date) {
  const view = await api("GET", `/admin/reconciliation?date=${date}`);
  const day = view.day;
  if (!day) return;
  $("#reconciliation-day").hidden = false;
  $("#reconciliation-day-title").textContent = `${day.date}: ${day.status}`;
  const t = (day.totals && day.totals.day) || {};
  $("#reconciliation-totals").textContent =
    `Bill: payments ${t.billPaymentsFen ?? "–"} fen, refunds ${t.billRefundsFen ?? "–"} fen. ` +
    `Ours: payments ${t.ourPaymentsFen ?? "–"} fen, refunds ${t.ourRefundsFen ?? "–"} fen.`;
  const rows = day.differences.map((x) => {
    const tr = element("tr", { "data-difference": x.id });
    [x.kind, x.subject, x.deltaFen, x.status, x.resolvedBy || "", x.resolution || ""]
      .forEach((v) => tr.appendChild(element("td", {}, String(v))));
    const cell = element("td");
    if (x.status === "open") {
      const button = element("button", { class: "resolve-difference", type: "button" }, "Resolve");
      button.addEventListener("click", () => resolveDifference(x.id, day.date));
      cell.appendChild(button);
    }
    tr.appendChild(cell);
    return tr;
  });
  $("#differences tbody").replaceChildren(...rows);
}

let pendingDifference = null;

function resolveDifference(id, date) {
  pendingDifference = { id, date };
  $("#difference-title").textContent = `Resolve difference ${id} of ${date}`;
  $("#difference-note").value = "";
  $("#difference-form").hidden = false;
  $("#difference-note").focus();
}

async function submitDifference(event) {
  event.preventDefault();
  const { id, date } = pendingDifference;
  const note = $("#difference-note").value;
  try {
    await api("POST", `/admin/reconciliation/differences/${id}/resolve`, { note });
    $("#reconciliation-result").textContent = `Difference ${id}: resolved.`;
    $("#difference-form").hidden = true;
    renderReconciliation(await api("GET", "/admin/reconciliation"));
    await showDay(date);
  } catch (error) {
    $("#reconciliation-result").textContent = `Difference ${id}: ${error.message}`;
  }
}

async function loadRate() {
  const rate = await fetch("/exchange-rate/current").then((r) => r.json());
  $("#rate-current").textContent = rate.data.rate;
}

async function saveRate(event) {
  event.preventDefault();
  try {
    const rate = await api("PUT", "/admin/exchange-rate", { rate: $("#rate-new").value });
    $("#rate-result").textContent = `Rate set to ${rate.rate}.`;
    await loadRate();
  } catch (error) {
    $("#rate-result").textContent = error.message;
  }
}

async function load() {
  $("#stats-error").textContent = "";
  const [stats, attention, reconciliation] = await Promise.all([
    api("GET", `/admin/stats?from=${$("#from").value}&to=${$("#to").value}`),
    api("GET", "/admin/attention"),
    api("GET", "/admin/reconciliation"),
  ]);
  renderStats(stats);
  renderAttention(attention);
  renderReconciliation(reconciliation);
  document.body.dataset.loaded = String(Date.now());
}

function show(loggedIn) {
  $("#login").hidden = loggedIn;
  $("#dashboard").hidden = !loggedIn;
  $("#logout").hidden = !loggedIn;
}

function logout(message) {
  token = null;
  sessionStorage.removeItem("adminToken");
  show(false);
  $("#login-error").textContent = message || "";
}

async function start() {
  show(true);
  try {
    await Promise.all([load(), loadRate()]);
  } catch (error) {
    if (error.message !== "unauthorized") $("#stats-error").textContent = error.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const today = shanghaiToday();
  $("#to").value = today;
  $("#from").value = daysBefore(today, 29);
  $("#login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("#token").value.trim();
    sessionStorage.setItem("adminToken", token);
    $("#login-error").textContent = "";
    start();
  });
  $("#logout").addEventListener("click", () => logout());
  $("#range-form").addEventListener("submit", (event) => {
    event.preventDefault();
    load().catch((error) => { $("#stats-error").textContent = error.message; });
  });
  $("#action-form").addEventListener("submit", submitAction);
  $("#action-cancel").addEventListener("click", () => { $("#action-form").hidden = true; });
  $("#rate-form").addEventListener("submit", saveRate);
  $("#difference-form").addEventListener("submit", submitDifference);
  $("#difference-cancel").addEventListener("click", () => { $("#difference-form").hidden = true; });
  if (token) start(); else show(false);
});
