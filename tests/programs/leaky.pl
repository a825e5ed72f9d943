#!/usr/bin/perl
# A `program` worker that leaks: every job keeps LEAK_MB (default 40) more MiB resident, then
# takes JOB_SECONDS (default 1.5) before it answers the payload back. Like
# workers/reverse_worker.pl, SIGTERM stops it at once when idle and after its job when busy.
use strict;
use warnings;
use Gearman::Worker;
use IO::Handle;
use Time::HiRes qw(sleep);

my @servers = split /,/, ($ENV{GEARDRIVER_JOB_SERVERS} // '127.0.0.1:4730');
my $function = $ENV{GEARDRIVER_JOB} // 'leaky';
my $leak_mb = $ENV{LEAK_MB} // 40;
my $seconds = $ENV{JOB_SECONDS} // 1.5;
my $status;
if (defined $ENV{GEARDRIVER_STATUS_FD} && open($status, '>&=', $ENV{GEARDRIVER_STATUS_FD})) {
    $status->autoflush(1);
}
sub report { print $status "@_\n" if $status }

my ($stop, $busy) = (0, 0);
$SIG{TERM} = sub { exit 0 unless $busy; $stop = 1 };
my @kept;
my $worker = Gearman::Worker->new(job_servers => \@servers);
$worker->register_function($function => sub {
    $busy = 1;
    report("busy $function");
    push @kept, 'x' x ($leak_mb * 1024 * 1024);
    sleep $seconds;
    report("done");
    $busy = 0;
    return $_[0]->arg;
});
report("idle");
$worker->work(stop_if => sub { $stop }) until $stop;
