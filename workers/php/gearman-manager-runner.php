<?php
// Serves GearmanManager worker files, unchanged, as a geardriver `program` worker
// (php-cli 8 + pecl gearman's GearmanWorker; Debian: php-cli php-gearman). One file:
//
//     [[jobs]]
//     name     = "reverse_string"
//     program  = ["php", "/opt/geardriver/workers/php/gearman-manager-runner.php",
//                 "/srv/app/workers/reverse_string.php"]
//     max_jobs = 100           # optional: a fresh PHP process after 100 jobs
//
// A whole GearmanManager worker_dir (every file a job, "{file}" its path):
//
//     [[worker_dirs]]
//     path    = "/srv/app/workers"
//     files   = "*.php"
//     program = ["php", "/opt/geardriver/workers/php/gearman-manager-runner.php", "{file}"]
//
// Usage: php gearman-manager-runner.php [--prefix=PREFIX] FILE...
//
// Each FILE defines, as for GearmanManager's pecl bridge, a function `NAME($job, &$log)` or a
// class `NAME` with a method `run($job, &$log)`, NAME being the file's name without `.php`
// (PREFIX.NAME with --prefix, GearmanManager's `prefix`, which names the PHP symbols only).
// As under GearmanManager:
// - $job is pecl's GearmanJob (workload(), handle(), sendStatus(), sendFail(), ...);
// - the return value is the result (pecl makes it a string: null -> "", an array ->
//   "Array"); $job->sendFail() or $job->setReturn(GEARMAN_WORK_FAIL) fails the job (the
//   host's stats count a sendFail() as done: pecl does not tell);
// - a class is instantiated once per process, at its first job;
// - each entry the function appends to $log is logged (non-scalars print_r'd, an entry
//   over 256 bytes cut), here one line each on stderr as `FUNCTION (HANDLE): LINE`, which the
//   host logs.
// Unlike GearmanManager, on purpose:
// - the files are loaded at start: a missing file, a PHP syntax error or a file without its
//   function or class ends the runner (exit 1) with a message naming the file;
// - an exception fails its job (WORK_WARNING "Class: message", then WORK_FAIL, which every
//   client sees), is logged, and the process keeps serving. (Under GearmanManager it kills
//   the process, and pecl sends WORK_EXCEPTION, on which gearmand leaves the clients that
//   did not ask for exceptions waiting forever.)
// - SIGTERM or SIGINT: the job in hand is finished, then the runner exits 0. (A
//   GearmanManager worker never runs its SIGTERM handler: it is SIGKILLed after the grace
//   time.)
//
// geardriver's environment: GEARDRIVER_JOB_SERVERS ("host:port,..."); the function served
// for FILE number i is the i-th name in GEARDRIVER_FUNCTIONS (else, for one FILE,
// GEARDRIVER_JOB; else NAME); GEARDRIVER_MAX_JOBS: exit 0 after that many jobs;
// GEARDRIVER_TIMEOUTS: each function's `timeout` in seconds (0 = none), in the same order: a
// job past it fails with "timeout: the job ran longer than Ns" (measured in whole seconds);
// GEARDRIVER_STATUS_FD: status lines `idle`, `busy FUNCTION`, `done`, `failed MESSAGE`.

// The runner's own names live in a namespace of their own: a worker file may be called
// report.php or env.php, as under GearmanManager, whose functions are methods.
namespace GearDriver\Runner;

use GearmanException;
use GearmanJob;
use GearmanWorker;
use RuntimeException;
use Throwable;

// Longest an idle worker takes to notice SIGTERM: libgearman's wait() retries its poll()
// when a signal interrupts it, so PHP's handler runs only when the wait times out.
const IDLE_WAIT_MS = 500;

function fatal(string $message): never {
    fwrite(STDERR, "gearman-manager-runner: $message\n");
    exit(1);
}

function env(string $name): ?string {
    $value = getenv($name);
    return $value === false || $value === '' ? null : $value;
}

$status = null;
function report(string $line): void {
    global $status;
    if ($status) {
        fwrite($status, str_replace(["\r", "\n"], ' ', $line) . "\n");
    }
}

// For worker code: shows LETTER for this process in geardriver's scoreboard while its job
// runs (`\GearDriver\Runner\state('C')`; one printable character, not one of `_ B S T .`).
function state(string $letter): void {
    report("state $letter");
}

// GearmanManager's logging of one $log entry: print_r for non-scalars, 256 bytes at most.
function log_entry(string $function, string $handle, $entry): void {
    if (!is_scalar($entry)) {
        $entry = trim(print_r($entry, true));
    } elseif (strlen((string)$entry) > 256) {
        $entry = substr((string)$entry, 0, 256) . '...(truncated)';
    }
    foreach (explode("\n", (string)$entry) as $line) {
        fwrite(STDERR, "$function ($handle): " . rtrim($line, "\r") . "\n");
    }
}

// Whether FILE loads and defines its worker, tried in a child process first: a fatal error
// PHP cannot catch (a function declared twice, a parse error in a file it includes) ends
// only the child. Null when it serves, else why not.
function try_load(string $file, string $symbol): ?string {
    $pid = pcntl_fork();
    if ($pid === -1) {
        return null; // cannot tell: load_worker will
    }
    if ($pid === 0) {
        // What the file prints as it loads (a blank line after its closing tag, a BOM) is no
        // failure.
        ob_start(fn() => '');
        try {
            require_once $file;
        } catch (Throwable $e) {
            fwrite(STDERR, "gearman-manager-runner: $file: " . get_class($e) . ': ' . $e->getMessage() . ' on line ' . $e->getLine() . "\n");
            exit(3);
        }
        exit((class_exists($symbol) && method_exists($symbol, 'run')) || function_exists($symbol) ? 0 : 4);
    }
    pcntl_waitpid($pid, $status);
    return match (pcntl_wexitstatus($status)) {
        0 => null,
        3 => 'it throws when loaded',
        4 => "it defines neither a function $symbol(\$job, &\$log) nor a class $symbol with a run(\$job, &\$log) method",
        default => 'PHP cannot load it (a fatal error, above)',
    };
}

// Loads FILE and returns how to call its worker: [class name, null] or [null, function name].
function load_worker(string $file, string $symbol): array {
    if (!is_file($file) || !is_readable($file)) {
        fatal("$file: no such readable file");
    }
    try {
        require_once $file;
    } catch (Throwable $e) {
        fatal("$file: " . get_class($e) . ': ' . $e->getMessage() . ' on line ' . $e->getLine());
    }
    if (class_exists($symbol) && method_exists($symbol, 'run')) { // an autoloader may load it
        return [$symbol, null];
    }
    if (function_exists($symbol)) {
        return [null, $symbol];
    }
    fatal("$file defines neither a function $symbol(\$job, &\$log) nor a class $symbol with a run(\$job, &\$log) method");
}

$args = array_slice($argv, 1);
$prefix = '';
if ($args && str_starts_with($args[0], '--prefix=')) {
    $prefix = substr(array_shift($args), strlen('--prefix='));
}
if (!$args) {
    fatal('usage: php gearman-manager-runner.php [--prefix=PREFIX] FILE...');
}
$names = array_map(fn($file) => basename($file, '.php'), $args);
if (($list = env('GEARDRIVER_FUNCTIONS')) !== null) {
    $functions = array_map('trim', explode(',', $list));
} elseif (count($args) === 1 && ($job = env('GEARDRIVER_JOB')) !== null) {
    $functions = [$job];
} else {
    $functions = $names;
}
if (count($functions) !== count($args)) {
    fatal(count($args) . ' files but ' . count($functions) . " functions in GEARDRIVER_FUNCTIONS ($list)");
}
$max_jobs = (int)(env('GEARDRIVER_MAX_JOBS') ?? 0);
// Seconds each function's job may run (0 = no limit), in the order of GEARDRIVER_FUNCTIONS.
$timeouts = array_map('floatval', explode(',', env('GEARDRIVER_TIMEOUTS') ?? ''));
if (($fd = env('GEARDRIVER_STATUS_FD')) !== null) {
    $status = fopen("php://fd/$fd", 'w') ?: null;
}

$stop = false;
pcntl_async_signals(true);
foreach ([SIGTERM, SIGINT] as $signal) {
    pcntl_signal($signal, function () use (&$stop) { $stop = true; });
}

$worker = new GearmanWorker();
$worker->addOptions(GEARMAN_WORKER_NON_BLOCKING);
$worker->setTimeout(IDLE_WAIT_MS);
try {
    $worker->addServers(env('GEARDRIVER_JOB_SERVERS') ?? '127.0.0.1:4730');
} catch (GearmanException $e) {
    // pecl 2.1 asks for the "exceptions" option on addServers and may throw when it cannot;
    // GearmanManager ignores this too (https://bugs.php.net/bug.php?id=63041).
    if ($e->getMessage() !== 'Failed to set exception option') {
        fatal('GEARDRIVER_JOB_SERVERS: ' . $e->getMessage());
    }
}

$jobs = 0;       // jobs run, for GEARDRIVER_MAX_JOBS
$failure = null; // why the job just run failed, when it threw
$ran = false;    // whether the last work() ran a job
$objects = [];   // file number => its class's object, once made
$current = null;  // [job, function] while a job runs
// A fatal error PHP cannot catch (memory exhausted) or exit() in the worker code ends the
// process mid-job. pecl has already sent WORK_EXCEPTION ("Unable to add worker function")
// by then, which gearmand 1.1 gives only to clients that asked for exceptions (the others
// wait, as under GearmanManager; the built-in server fails the job to them): say why here,
// in the log and as the job's last error.
register_shutdown_function(function () use (&$current) {
    if ($current === null) {
        return;
    }
    [$job, $function] = $current;
    $error = error_get_last();
    $why = $error !== null && in_array($error['type'], [E_ERROR, E_CORE_ERROR, E_COMPILE_ERROR, E_USER_ERROR], true)
        ? "PHP Fatal error: {$error['message']} in {$error['file']}:{$error['line']}"
        : 'the worker code called exit() during the job';
    log_entry($function, $job->handle(), "failed: $why");
    report("failed $why");
});
$served = [];
foreach ($args as $i => $file) {
    $symbol = $prefix . $names[$i];
    $function = $functions[$i];
    // One runner for several files (a group): a file that cannot serve leaves the others
    // serving, as under GearmanManager, which loads each file at its first job.
    if (count($args) > 1 && ($why = try_load($file, $symbol)) !== null) {
        fwrite(STDERR, "gearman-manager-runner: $file: not served ($function): $why; the other files are served\n");
        report("unserved $function " . basename($file) . ": $why");
        continue;
    }
    [$class, $callable] = load_worker($file, $symbol);
    $served[] = $function;
    $timeout = $timeouts[$i] ?? 0.0;
    $worker->addFunction($function, function (GearmanJob $job) use ($i, $function, $class, $callable, $timeout, &$objects, &$jobs, &$failure, &$ran, &$current) {
        $ran = true;
        $jobs++;
        $failure = null;
        $current = [$job, $function];
        // A stop waits for the job: SIGTERM is held until it is done, so that it cuts no
        // sleep() short in the worker code.
        pcntl_sigprocmask(SIG_BLOCK, [SIGTERM, SIGINT]);
        report("busy $function");
        $log = [];
        if ($timeout > 0) {
            // The job's `timeout`: an alarm (whole seconds) throws into the worker code, which
            // fails the job; one stuck where PHP cannot interrupt it is the host's to kill.
            pcntl_signal(SIGALRM, function () use ($timeout) {
                throw new RuntimeException("timeout: the job ran longer than {$timeout}s");
            });
            pcntl_alarm((int)ceil($timeout));
        }
        try {
            if ($class !== null) {
                $objects[$i] ??= new $class();
                $result = $objects[$i]->run($job, $log);
            } else {
                $result = $callable($job, $log);
            }
            if (is_object($result)) {
                // Made a string here, where failing to is the job's failure; in pecl it
                // would throw out of work() and end the process.
                $result = (string)$result;
            }
        } catch (Throwable $e) {
            $failure = get_class($e) . ': ' . $e->getMessage();
            $where = $e->getFile() . ':' . $e->getLine();
            $result = null;
        } finally {
            pcntl_alarm(0);
            $current = null;
            pcntl_sigprocmask(SIG_UNBLOCK, [SIGTERM, SIGINT]);
        }
        foreach ($log as $entry) {
            log_entry($function, $job->handle(), $entry);
        }
        if ($failure !== null) {
            log_entry($function, $job->handle(), "failed: $failure in $where");
            $job->sendWarning($failure);
            $job->setReturn(GEARMAN_WORK_FAIL);
        }
        return $result;
    });
}

if (!$served) {
    fatal('no file of ' . implode(', ', $args) . ' can serve');
}
fwrite(STDERR, 'gearman-manager-runner: serving ' . implode(', ', $served) . "\n");
report('idle');
$unreachable = null; // the last connection error logged, so that an outage is logged once
$code = null;        // what the last work() returned
$stop_by = null;     // when stopping: how long an unanswered GRAB_JOB is waited for
while (true) {
    // Stop between jobs, and not while a GRAB_JOB is unanswered (IO_WAIT): the job it may
    // bring would go back to the queue. A job server that never answers costs 2 s at most.
    if (($stop || ($max_jobs > 0 && $jobs >= $max_jobs))
        && ($code !== GEARMAN_IO_WAIT || microtime(true) > ($stop_by ??= microtime(true) + 2))) {
        break;
    }
    $ran = false;
    @$worker->work();
    $code = $worker->returnCode();
    $why = $worker->error();
    if ($ran) {
        report($code === GEARMAN_SUCCESS ? 'done' : 'failed ' . ($failure ?? 'the job failed'));
        $unreachable = null;
        continue;
    }
    if ($code === GEARMAN_SUCCESS) {
        continue; // more to do at once (as after a failed job): no waiting
    }
    $waiting = $code === GEARMAN_IO_WAIT || $code === GEARMAN_NO_JOBS;
    if ($waiting && (@$worker->wait() || $worker->returnCode() !== GEARMAN_NO_ACTIVE_FDS)) {
        continue; // a packet came, or the wait timed out
    }
    // No job server connected (or an error): say why once, and try again shortly.
    if ($why !== $unreachable) {
        $unreachable = $why;
        fwrite(STDERR, "gearman-manager-runner: no job server to wait on: $why\n");
    }
    usleep(IDLE_WAIT_MS * 1000);
}
$worker->unregisterAll();
exit(0);
