#!/usr/bin/env node
// Interop test client: Node.js npm package `gearman` 2.1.0 (mreinstein/node-gearman,
// pinned in package.json next to this file; install with `npm ci --prefix tests/interop`).
// Submits jobs to one job server and prints, one JSON line per event, what the library
// reports, so the Rust tests can check job semantics through it.
//
// Usage: node client.js 'JSON-SPEC'
//   {"server": "127.0.0.1:4730", "exceptions": false, "mode": "do"|"set",
//    "timeout_ms": 20000,
//    "tasks": [{"function": "echo", "data": "text", "unique": "",
//               "priority": "normal"|"high"|"low", "background": false}]}
//   mode "do":  on one connection, each task in turn: submitJob, then wait until it ends
//               (JOB_CREATED for a background task) before submitting the next
//   mode "set": on one connection, submitJob for every task at once, then wait for all
//   "exceptions": setOption('exceptions') (OPTION_REQ) first, tasks once OPTION_RES came
// Output (stdout, one line per event as it arrives; every line also has "t_ms" since start):
//   {"task":i,"event":"created"|"status"(numerator,denominator)|"data"(hex)|"warning"(hex)
//    |"complete"(hex)|"fail"|"exception"(hex)|"error"(message)}
//   then {"done":true}, exit 0.  Timeout: {"event":"hang"}, exit 3.  Bad spec: exit 2.
//
// The library is a thin event emitter over the protocol: there is no task object, no
// blocking call and no per-job callback. It emits JOB_CREATED(handle) and
// WORK_STATUS/DATA/WARNING/COMPLETE/FAIL/EXCEPTION({handle, ...}) per packet, and the
// caller has to match handles to its jobs. Findings:
// - Every event is reported, in both modes, as it arrives (the modes differ only in
//   what is in flight). JOB_CREATED carries nothing but the handle: this script gives the
//   n-th JOB_CREATED (or a job-less ERROR) to the n-th submission (the server answers in
//   order), then matches WORK_* packets by handle.
// - Priority high/normal/low and background are all supported (SUBMIT_JOB, _HIGH, _LOW and
//   their _BG forms); a background task ends with "created".
// - Payloads: WORK_COMPLETE and WORK_DATA are Buffers (exact bytes); WORK_WARNING and
//   WORK_EXCEPTION are decoded as UTF-8 strings (invalid bytes become U+FFFD, so their
//   "hex" is then not the bytes sent); status numerator/denominator are strings.
// - Exceptions can be asked for: setOption('exceptions') sends OPTION_REQ and the server
//   answers OPTION_RES; WORK_EXCEPTION then arrives (gearmand 1.1.20 sends no WORK_FAIL
//   after it) and is reported as "exception".
// - exceptions false + worker WORK_EXCEPTION: gearmand 1.1.20 sends WORK_FAIL "handle\0";
//   the library passes the handle on with the NUL ("H:host:1\u0000"), so it matches no job
//   (a plain handle comparison would wait forever). This script reports "error" for the
//   task whose handle it is once the trailing NULs are stripped, not "fail".
// - The same unique id submitted several times on one connection: gearmand (and the
//   built-in server) answer every submission with a JOB_CREATED carrying the same handle
//   and then send every WORK_* packet once per submission; the library emits each copy
//   with nothing to tell the submissions apart. This script hands each copy to the task
//   of that handle that has had the fewest of that packet (the earliest on a tie), so
//   each task gets one of each; a server sending one copy only would leave the others
//   to the timeout ("hang").
// - The function name and the unique id are encoded as Buffer 'ascii' (= latin1, the
//   low byte of each UTF-16 unit), which would mangle non-ASCII; this script passes the
//   unique id as a Buffer and the function name as the latin1 string of its UTF-8 bytes,
//   so both go out as UTF-8. Data goes as a UTF-8 Buffer. An empty or absent unique id
//   cannot be sent: the library then makes up a random 12-character one.
// - Its `timeout` option is the socket's idle timeout and only emits 'timeout'; it is not
//   used, the script keeps its own deadline. Connection errors (e.g. refused) come as
//   'error' and are reported as "error" for every unfinished task, as is the server
//   closing the connection or an ERROR packet that is not an answer to a submission.
'use strict'

const T0 = process.hrtime.bigint()

function emit(ev) {
  ev.t_ms = Number((process.hrtime.bigint() - T0) / 1000000n)
  process.stdout.write(JSON.stringify(ev) + '\n')   // synchronous for files and pipes on Linux
}

const hexs = (b) => (Buffer.isBuffer(b) ? b : Buffer.from(b == null ? '' : String(b), 'utf8')).toString('hex')

function badSpec() {
  process.stderr.write('bad spec: usage: node client.js \'{"server":...,"mode":"do"|"set","tasks":[...]}\'\n')
  process.exit(2)
}

let spec, host, port
try {
  spec = JSON.parse(process.argv[2])
  const colon = spec.server.lastIndexOf(':')
  host = spec.server.slice(0, colon)
  port = Number(spec.server.slice(colon + 1))
  if (typeof spec.server !== 'string' || colon < 1 || !Number.isInteger(port) || port < 1 || port > 65535
      || !['do', 'set'].includes(spec.mode) || !Array.isArray(spec.tasks)
      || (spec.timeout_ms != null && !(Number(spec.timeout_ms) > 0))
      || !spec.tasks.every((t) => t && typeof t === 'object' && typeof t.function === 'string'
        && (t.data == null || typeof t.data === 'string')
        && (t.unique == null || typeof t.unique === 'string')
        && [undefined, null, '', 'normal', 'high', 'low'].includes(t.priority))) badSpec()
} catch (e) {
  badSpec()
}

let gearman
try {
  gearman = require('gearman')
} catch (e) {
  process.stderr.write('npm package gearman not installed: run `npm ci` in ' + __dirname + '\n')
  process.exit(1)
}

const tasks = spec.tasks
const bg = (i) => Boolean(tasks[i].background)
// Per task: its handle, whether it has ended, and how many of each WORK_* it has had.
const state = tasks.map(() => ({ handle: null, ended: false, got: {} }))
const awaitingCreated = []   // indices submitted, in order, still waiting for JOB_CREATED
const byHandle = new Map()   // handle -> task indices, in submission order
let next = 0                 // do mode: next task to submit
let finishing = false

const watchdog = setTimeout(() => {
  emit({ event: 'hang' })
  process.exit(3)
}, Number(spec.timeout_ms || 20000))

function finish() {
  if (finishing) return
  finishing = true
  clearTimeout(watchdog)
  emit({ done: true })
  client.close()
  process.exit(0)
}

function end(i, ev) {
  if (state[i].ended) return
  state[i].ended = true
  emit(Object.assign({ task: i }, ev))
}

function errorUnended(message) {
  tasks.forEach((_, i) => end(i, { event: 'error', message }))
  finish()
}

// After a task ended (or was created, for background): submit the next one (do mode),
// or finish once every task has ended.
function advance() {
  if (finishing) return
  if (spec.mode === 'do') {
    while (next < tasks.length && state[next].ended) next++
    if (next < tasks.length && awaitingCreated.length === 0 && !state[next].submitted) return submit(next)
  }
  if (state.every((s) => s.ended)) finish()
}

function submit(i) {
  const t = tasks[i]
  const options = {
    priority: t.priority || 'normal',
    background: bg(i),
  }
  if (t.unique) options.unique_id = Buffer.from(t.unique, 'utf8')   // else: the library's random id
  state[i].submitted = true
  awaitingCreated.push(i)
  try {
    client.submitJob(Buffer.from(t.function, 'utf8').toString('latin1'), Buffer.from(t.data || '', 'utf8'), options)
  } catch (e) {
    awaitingCreated.pop()
    end(i, { event: 'error', message: 'submitJob: ' + e.message })
    advance()
  }
}

function start() {
  if (spec.mode === 'do') return advance()
  tasks.forEach((_, i) => submit(i))
  advance()
}

// The task a WORK_* packet of `kind` for `handle` belongs to (see the header), or null.
function target(handle, kind) {
  let ids = byHandle.get(handle)
  if (!ids) {
    const stripped = handle.replace(/\0+$/, '')
    const owners = stripped !== handle && byHandle.get(stripped)
    const i = owners && owners.find((j) => !state[j].ended)
    if (i !== undefined && i !== false) {
      end(i, { event: 'error', message: `${kind} for handle ${JSON.stringify(handle)}, which no task has `
        + `(trailing NUL); task ${i} has ${JSON.stringify(stripped)}` })
      advance()
    } else {
      process.stderr.write(`ignored ${kind} for unknown handle ${JSON.stringify(handle)}\n`)
    }
    return null
  }
  ids = ids.filter((j) => !state[j].ended)
  if (ids.length === 0) {
    process.stderr.write(`ignored ${kind} for handle ${JSON.stringify(handle)}: its tasks have ended\n`)
    return null
  }
  const i = ids.reduce((a, b) => ((state[b].got[kind] || 0) < (state[a].got[kind] || 0) ? b : a))
  state[i].got[kind] = (state[i].got[kind] || 0) + 1
  return i
}

const client = gearman(host, port)

client.on('JOB_CREATED', (handle) => {
  const i = awaitingCreated.shift()
  if (i === undefined) return process.stderr.write(`ignored JOB_CREATED ${JSON.stringify(handle)}\n`)
  state[i].handle = handle
  if (!byHandle.has(handle)) byHandle.set(handle, [])
  byHandle.get(handle).push(i)
  if (bg(i)) end(i, { event: 'created' })
  else emit({ task: i, event: 'created' })
  advance()
})
client.on('WORK_STATUS', (p) => {
  const i = target(p.handle, 'WORK_STATUS')
  if (i === null) return
  const num = (s) => (Number.isFinite(Number(s)) && s !== '' ? Number(s) : s)
  emit({ task: i, event: 'status', numerator: num(p.percent_num), denominator: num(p.percent_den) })
})
client.on('WORK_DATA', (p) => {
  const i = target(p.handle, 'WORK_DATA')
  if (i !== null) emit({ task: i, event: 'data', hex: hexs(p.payload) })
})
client.on('WORK_WARNING', (p) => {
  const i = target(p.handle, 'WORK_WARNING')
  if (i !== null) emit({ task: i, event: 'warning', hex: hexs(p.warning) })
})
client.on('WORK_COMPLETE', (p) => {
  const i = target(p.handle, 'WORK_COMPLETE')
  if (i !== null) { end(i, { event: 'complete', hex: hexs(p.payload) }); advance() }
})
client.on('WORK_FAIL', (p) => {
  const i = target(p.handle, 'WORK_FAIL')
  if (i !== null) { end(i, { event: 'fail' }); advance() }
})
client.on('WORK_EXCEPTION', (p) => {
  const i = target(p.handle, 'WORK_EXCEPTION')
  if (i !== null) { end(i, { event: 'exception', hex: hexs(p.exception) }); advance() }
})
let optionPending = false
client.on('OPTION_RES', () => {
  if (!optionPending) return
  optionPending = false
  start()
})
client.on('ERROR', (code, text) => {
  const message = `ERROR ${code}: ${text}`
  if (optionPending) return errorUnended('setOption(exceptions): ' + message)
  const i = awaitingCreated.shift()   // the answer to that submission instead of JOB_CREATED
  if (i === undefined) return errorUnended(message)
  end(i, { event: 'error', message })
  advance()
})
client.on('error', (e) => errorUnended('connection error: ' + (e && e.message)))
client.on('close', () => errorUnended('connection closed by the server'))
process.on('uncaughtException', (e) => errorUnended('library error: ' + (e && e.message || e)))

client.connect(() => {
  if (spec.exceptions) {
    optionPending = true
    client.setOption('exceptions')
  } else {
    start()
  }
})
