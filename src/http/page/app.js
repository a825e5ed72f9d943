// The status page: reads /api/status and /api/processes every second and redraws. The
// console's secret, when the host has one, is asked for once and kept for this tab only.
"use strict";

const EVERY_MS = 1000;
const HISTORY = 120; // chart points: one per poll
const history = []; // {t, finished}
let token = sessionStorage.getItem("geardriver-token") || "";

const $ = (id) => document.getElementById(id);

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function when(seconds) {
  if (!seconds) return "never";
  return new Date(seconds * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "");
}

function ago(ms, now) {
  const s = Math.max(0, (now - ms) / 1000);
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
  if (s < 3600) return (s / 60).toFixed(0) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function bytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

async function get(path) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const response = await fetch(path, { headers, cache: "no-store" });
  if (response.status === 401) {
    const body = await response.json().catch(() => ({}));
    throw { login: true, message: body.message || "secret needed" };
  }
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}

function drawJobs(status) {
  const body = $("jobs").tBodies[0];
  body.replaceChildren(...status.jobs.map((job) => {
    const tr = document.createElement("tr");
    tr.dataset.job = job.name;
    if (job.failed) tr.className = "failed";
    tr.append(
      cell(job.name), cell(job.pool, "text"), cell(job.min), cell(job.max),
      cell(job.processes, "processes"), cell(job.busy), cell(job.idle),
      cell(job.starting), cell(job.stopping),
      cell(job.queued == null ? "-" : job.queued), cell(job.running == null ? "-" : job.running),
      cell(job.jobs_done), cell(job.jobs_failed), cell(when(job.lastrun)),
      cell(job.failed ? "FAILED: " + job.failed : job.lasterror_msg ? when(job.lasterror) : "", job.failed ? "error" : ""),
    );
    return tr;
  }));
}

function drawQueues(status) {
  const section = $("queues-section");
  section.hidden = !status.queues;
  if (!status.queues) return;
  $("queues").tBodies[0].replaceChildren(...status.queues.map((f) => {
    const tr = document.createElement("tr");
    tr.dataset.function = f.name;
    tr.append(cell(f.name), ...f.queued.map((n) => cell(n)), cell(f.scheduled),
      cell(f.running), cell(f.workers), cell(f.completed), cell(f.failed));
    return tr;
  }));
}

function drawProcesses(processes, now) {
  $("processes").tBodies[0].replaceChildren(...processes.map((p) => {
    const tr = document.createElement("tr");
    tr.dataset.pid = p.pid;
    const job = p.function ? p.function + (p.handle ? " " + p.handle : "") : "";
    tr.append(cell(p.pid), cell(p.pool, "text"), cell(p.custom_state ? p.state + " " + p.custom_state : p.state, "text state-" + p.state),
      cell(ago(p.since_ms, now)), cell(job, "text"), cell(p.jobs_done), cell(p.jobs_failed),
      cell(bytes(p.rss_bytes)), cell(p.cpu_percent == null ? "" : p.cpu_percent.toFixed(1) + "%"));
    return tr;
  }));
}

function drawErrors(status) {
  const errors = status.jobs
    .filter((j) => j.failed || j.lasterror_msg)
    .sort((a, b) => b.lasterror - a.lasterror);
  $("errors").replaceChildren(...errors.map((j) => {
    const li = document.createElement("li");
    const time = document.createElement("span");
    time.className = "when";
    time.textContent = when(j.lasterror);
    li.append(time, j.name + ": " + (j.failed ? "FAILED: " + j.failed : j.lasterror_msg));
    return li;
  }));
  if (!errors.length) $("errors").textContent = "none";
}

function drawChart(status) {
  const finished = status.jobs.reduce((n, j) => n + j.jobs_done + j.jobs_failed, 0);
  history.push({ t: status.now_ms, finished });
  while (history.length > HISTORY + 1) history.shift();
  const rates = [];
  for (let i = 1; i < history.length; i++) {
    const dt = (history[i].t - history[i - 1].t) / 1000;
    // A group's jobs share their pool's counts, and a reload may reset them: never below 0.
    rates.push(dt > 0 ? Math.max(0, history[i].finished - history[i - 1].finished) / dt : 0);
  }
  const canvas = $("chart");
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  const top = Math.max(1, ...rates);
  const step = canvas.width / HISTORY;
  g.fillStyle = "#3a7";
  rates.forEach((r, i) => {
    const h = (r / top) * (canvas.height - 16);
    g.fillRect(canvas.width - (rates.length - i) * step, canvas.height - h, Math.max(1, step - 1), h);
  });
  g.fillStyle = "#555";
  g.fillText("max " + top.toFixed(1) + "/s", 4, 12);
  const last = rates.length ? rates[rates.length - 1] : 0;
  canvas.dataset.rate = last.toFixed(2);
}

async function poll() {
  try {
    const [status, processes] = await Promise.all([get("/api/status"), get("/api/processes")]);
    // Pools of a group appear once per job: count each pool once for the chart.
    const seen = new Set();
    drawChart({ now_ms: status.now_ms, jobs: status.jobs.filter((j) => !seen.has(j.pool) && seen.add(j.pool)) });
    drawJobs(status);
    drawQueues(status);
    drawProcesses(processes, status.now_ms);
    drawErrors(status);
    $("host").textContent = "version " + status.version + ", up " + ago(0, status.uptime_seconds * 1000);
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    $("updated").className = "";
    document.body.classList.remove("stale");
    $("login").hidden = true;
  } catch (e) {
    if (e && e.login) {
      $("login").hidden = false;
      $("login-error").textContent = token ? e.message : "";
    } else {
      $("updated").textContent = "cannot reach the host: " + (e && e.message ? e.message : e) +
        " (the figures below are from the last update)";
      $("updated").className = "stale";
      document.body.classList.add("stale");
    }
  }
  setTimeout(poll, EVERY_MS);
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("secret").value;
  sessionStorage.setItem("geardriver-token", token);
  $("login").hidden = true;
});

poll();
