<?php
// Interop test client: PHP pecl gearman extension 2.1.0 (GearmanClient, on
// libgearman 1.1.x; Debian php-cli + php-gearman). Submits jobs to one job
// server and prints, one JSON line per event, what the library reports, so the
// Rust tests can check job semantics through it.
//
// Usage: php client.php 'JSON-SPEC'
//   {"server": "127.0.0.1:4730", "exceptions": false, "mode": "do"|"set",
//    "timeout_ms": 20000,
//    "tasks": [{"function": "echo", "data": "text", "unique": "",
//               "priority": "normal"|"high"|"low", "background": false}]}
//   mode "do":  each task in turn with doNormal/doHigh/doLow (do*Background if background)
//   mode "set": addTask/addTaskHigh/addTaskLow(/...Background) for all, then runTasks()
// Output (stdout, flushed per line; every line also has "t_ms" since start):
//   {"task":i,"event":"created"|"status"(numerator,denominator)|"data"(hex)|"warning"(hex)
//    |"complete"(hex)|"fail"|"exception"(hex)|"error"(message)}
//   then {"done":true}, exit 0.  Timeout: {"event":"hang"}, exit 3.  Bad spec: exit 2.
//   The work runs in a forked child; the parent is the watchdog (libgearman
//   retries poll() on EINTR, so a PHP signal handler would never run).
//
// Exceptions: this pecl version has no GEARMAN_CLIENT_EXCEPTIONS; addServer's
// third argument ($setupExceptionHandler, default TRUE) sends OPTION_REQ
// "exceptions". We pass the spec's flag there. setExceptionCallback() ALSO
// sends it, so that callback is only registered when the flag is true.
//
// What it can report (findings):
// - set mode: every callback (created, status, data, warning, complete, fail,
//   exception). runTasks() submits the tasks in REVERSE order of addTask
//   (libgearman keeps the task list newest-first).
// - do mode (libgearman 1.1): do*() never returns early with
//   GEARMAN_WORK_DATA/STATUS/WARNING and the client callbacks do not fire, so
//   status and warning are lost; WORK_DATA payloads are prepended to the
//   returned result (data "d1" + complete "ok" -> complete "d1ok").
//   returnCode() is GEARMAN_WORK_FAIL on fail, GEARMAN_WORK_EXCEPTION on
//   exception (exception data is not returned: hex ""). "created" only for
//   background (do*Background returns the handle).
// - exceptions false + worker WORK_EXCEPTION: gearmand 1.1.20 sends WORK_FAIL
//   "handle\0" (trailing NUL); libgearman does not match it to the task and
//   waits forever in both modes -> "hang", exit 3.
ini_set('display_errors', 'stderr');
error_reporting(E_ALL);
$T0 = microtime(true);

function emit(array $ev) {
    global $T0;
    $ev['t_ms'] = (int)floor((microtime(true) - $T0) * 1000);
    fwrite(STDOUT, json_encode($ev, JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE) . "\n");
    fflush(STDOUT);
}

$spec = json_decode($argv[1] ?? '', true);
$ok = is_array($spec) && is_string($spec['server'] ?? null) && is_array($spec['tasks'] ?? null)
    && in_array($spec['mode'] ?? '', ['do', 'set'], true);
foreach (($ok ? $spec['tasks'] : []) as $t) {
    $ok = $ok && is_array($t) && is_string($t['function'] ?? null);
}
if (!$ok) {
    fwrite(STDERR, "bad spec: usage: php client.php '{\"server\":...,\"mode\":\"do\"|\"set\",\"tasks\":[...]}'\n");
    exit(2);
}
$tasks = $spec['tasks'];

// Watchdog: the parent waits for the child doing the work.
$pid = pcntl_fork();
if ($pid > 0) {
    $deadline = $T0 + ($spec['timeout_ms'] ?? 20000) / 1000;
    while (pcntl_waitpid($pid, $status, WNOHANG) === 0) {
        if (microtime(true) >= $deadline) {
            posix_kill($pid, SIGKILL);
            pcntl_waitpid($pid, $status);
            emit(['event' => 'hang']);
            exit(3);
        }
        usleep(5000);
    }
    exit(pcntl_wifexited($status) ? pcntl_wexitstatus($status) : 1);
}

$ended = [];
$client = new GearmanClient();
$pos = strrpos($spec['server'], ':');
$client->addServer(substr($spec['server'], 0, $pos), (int)substr($spec['server'], $pos + 1),
                   (bool)($spec['exceptions'] ?? false));

function rc_error($client, $i, $what) {
    global $ended;
    $ended[$i] = true;
    emit(['task' => $i, 'event' => 'error',
          'message' => "$what: returnCode " . $client->returnCode() . ': ' . $client->error()]);
}

$suffix = ['high' => 'High', 'low' => 'Low', 'normal' => ''];
if ($spec['mode'] === 'do') {
    foreach ($tasks as $i => $t) {
        $p = $suffix[$t['priority'] ?? 'normal'] ?? '';
        $args = [$t['function'], $t['data'] ?? ''];
        if (($t['unique'] ?? '') !== '') $args[] = $t['unique'];   // passing null is deprecated
        if (!empty($t['background'])) {
            $client->{"do{$p}Background"}(...$args);
            if ($client->returnCode() === GEARMAN_SUCCESS) emit(['task' => $i, 'event' => 'created']);
            else rc_error($client, $i, "do{$p}Background");
            continue;
        }
        $method = $p === '' ? 'doNormal' : "do$p";
        for ($n = 0; $n < 100000; $n++) {   // libgearman 0.x returned early on WORK_*; 1.1 does not
            $res = $client->$method(...$args);
            switch ($client->returnCode()) {
                case GEARMAN_WORK_DATA:    emit(['task' => $i, 'event' => 'data', 'hex' => bin2hex($res)]); continue 2;
                case GEARMAN_WORK_WARNING: emit(['task' => $i, 'event' => 'warning', 'hex' => bin2hex($res)]); continue 2;
                case GEARMAN_WORK_STATUS:
                    [$num, $den] = $client->doStatus();
                    emit(['task' => $i, 'event' => 'status', 'numerator' => $num, 'denominator' => $den]); continue 2;
                case GEARMAN_SUCCESS:        emit(['task' => $i, 'event' => 'complete', 'hex' => bin2hex($res)]); break 2;
                case GEARMAN_WORK_FAIL:      emit(['task' => $i, 'event' => 'fail']); break 2;
                case GEARMAN_WORK_EXCEPTION: emit(['task' => $i, 'event' => 'exception', 'hex' => bin2hex($res)]); break 2;
                default:                     rc_error($client, $i, $method); break 2;
            }
        }
    }
} else {
    $cb = function ($event, $payload) {
        return function ($task, $i) use ($event, $payload) {
            global $ended, $tasks;
            $ev = ['task' => $i, 'event' => $event];
            if ($payload) $ev['hex'] = bin2hex((string)$task->data());
            if ($event === 'status') {
                $ev['numerator'] = $task->taskNumerator();
                $ev['denominator'] = $task->taskDenominator();
            }
            if (in_array($event, ['complete', 'fail', 'exception'], true)
                || ($event === 'created' && !empty($tasks[$i]['background']))) $ended[$i] = true;
            emit($ev);
        };
    };
    $client->setCreatedCallback($cb('created', false));
    $client->setStatusCallback($cb('status', false));
    $client->setDataCallback($cb('data', true));
    $client->setWarningCallback($cb('warning', true));
    $client->setCompleteCallback($cb('complete', true));
    $client->setFailCallback($cb('fail', false));
    // setExceptionCallback() itself sends OPTION_REQ "exceptions", so only with the flag.
    if (!empty($spec['exceptions'])) $client->setExceptionCallback($cb('exception', true));
    foreach ($tasks as $i => $t) {
        $m = 'addTask' . ($suffix[$t['priority'] ?? 'normal'] ?? '') . (empty($t['background']) ? '' : 'Background');
        $args = [$t['function'], $t['data'] ?? '', $i];
        if (($t['unique'] ?? '') !== '') $args[] = $t['unique'];
        if ($client->$m(...$args) === false) rc_error($client, $i, $m);
    }
    $ran = $client->runTasks();
    foreach ($tasks as $i => $t) {
        if (empty($ended[$i])) rc_error($client, $i, $ran ? 'runTasks returned with the task unfinished' : 'runTasks failed');
    }
}
emit(['done' => true]);
exit(0);
