<?php
// A bulk producer, for scripts/bench_queue.py: submits background jobs through PHP's pecl
// client (libgearman's task API) in batches: BATCH addTaskBackground calls, then one
// runTasks, which sends them all before it reads their JOB_CREATED packets (one batch's
// jobs are in flight at once). Reads a line on stdin first, so that several start together;
// then prints "START END" (seconds, microtime) of its submitting.
//
// Usage: php submit_batches.php PORT FUNCTION FIRST COUNT BATCH

[$_, $port, $function, $first, $count, $batch] = array_pad($argv, 6, null);
if ($batch === null || (int)$batch < 1) {
    fwrite(STDERR, "usage: php submit_batches.php PORT FUNCTION FIRST COUNT BATCH\n");
    exit(2);
}
$client = new GearmanClient();
$client->addServer('127.0.0.1', (int)$port);
// Connect before the start (an echo), so that the timing holds submits only.
if ($client->ping('x') === false) {
    fwrite(STDERR, "cannot reach the job server: " . $client->error() . "\n");
    exit(1);
}
fgets(STDIN);
$start = microtime(true);
$created = 0;
$client->setCreatedCallback(function () use (&$created) { $created++; });
for ($sent = 0; $sent < (int)$count; $sent += $n) {
    $n = min((int)$batch, (int)$count - $sent);
    for ($i = 0; $i < $n; $i++) {
        $client->addTaskBackground($function, sprintf("job-%06d", (int)$first + $sent + $i));
    }
    if (!$client->runTasks()) {
        fwrite(STDERR, "runTasks failed: " . $client->error() . "\n");
        exit(1);
    }
}
$end = microtime(true);
if ($created !== (int)$count) {
    fwrite(STDERR, "only $created of $count jobs were acknowledged\n");
    exit(1);
}
printf("%.6f %.6f\n", $start, $end);
