#!/usr/bin/perl
# An example `program` worker: a long-running program that speaks Gearman itself, here with
# Perl's Gearman::Worker (Debian: libgearman-client-perl). geardriver only starts, supervises
# and scales it; it finds the job servers in GEARDRIVER_JOB_SERVERS ("host:port,host:port")
# and the function to register in GEARDRIVER_JOB.
#
#     [[jobs]]
#     name    = "perl_reverse"
#     program = ["perl", "workers/reverse_worker.pl"]
#
# On SIGTERM it finishes the job in hand and exits, as geardriver expects of a worker. It
# tells geardriver what it is doing through the descriptor in GEARDRIVER_STATUS_FD (optional:
# then the scoreboard, lastrun and lasterror know it exactly; see the README).
use strict;
use warnings;
use Gearman::Worker;
use IO::Handle;

my @servers = split /,/, ($ENV{GEARDRIVER_JOB_SERVERS} // '127.0.0.1:4730');
my $function = $ENV{GEARDRIVER_JOB} // 'perl_reverse';
my $status;
if (defined $ENV{GEARDRIVER_STATUS_FD} && open($status, '>&=', $ENV{GEARDRIVER_STATUS_FD})) {
    $status->autoflush(1);
}
sub report { print $status "@_\n" if $status }

# SIGTERM: exit now when idle; when holding a job, finish it first (Gearman::Worker may be
# blocked waiting for work, so an idle worker must not wait for `stop_if` to be asked).
my ($stop, $busy) = (0, 0);
$SIG{TERM} = sub { exit 0 unless $busy; $stop = 1 };

my $worker = Gearman::Worker->new(job_servers => \@servers);
$worker->register_function($function => sub {
    $busy = 1;
    report("busy $function");
    my $result = scalar reverse $_[0]->arg;
    report("done");
    $busy = 0;
    return $result;
});
print "serving $function on @servers\n";
$| = 1;
report("idle");
$worker->work(stop_if => sub { $stop }) until $stop;
