#!/usr/bin/perl
# A `program` worker for the tests, on Perl's Gearman::Worker: each job sleeps the workload's
# milliseconds, prints "slept N" on stdout and returns it. With STATUS_LINES=1 in its
# environment it tells its host what it is doing, through the descriptor in
# $GEARDRIVER_STATUS_FD; with DIE_ON_TERM=1 a SIGTERM ends it at once, job or not (as many
# PHP workers do); with EXIT_DELAY_MS=N it takes N ms to exit once told to stop (closing
# files, flushing buffers).
use strict;
use warnings;
use Gearman::Worker;
use IO::Handle;
use Time::HiRes qw(usleep time);

my @servers = split /,/, $ENV{GEARDRIVER_JOB_SERVERS};
my $function = $ENV{GEARDRIVER_JOB};
my $status;
if ($ENV{STATUS_LINES} && defined $ENV{GEARDRIVER_STATUS_FD}) {
    open($status, '>&=', $ENV{GEARDRIVER_STATUS_FD}) or die "status descriptor: $!";
    $status->autoflush(1);
}
sub report { print $status "@_\n" if $status }

my ($stop, $busy) = (0, 0);
$SIG{TERM} = $ENV{DIE_ON_TERM} ? 'DEFAULT' : sub { exit 0 unless $busy; $stop = 1 };
$| = 1;
my $worker = Gearman::Worker->new(job_servers => \@servers);
$worker->register_function($function => sub {
    $busy = 1;
    report("busy $function");
    my $ms = $_[0]->arg;
    # The whole time, even if a signal (a stop) interrupts the sleep.
    my $until = time + $ms / 1000;
    while ((my $left = $until - time) > 0) { usleep($left * 1_000_000) }
    print "slept $ms\n";
    report("done");
    $busy = 0;
    return "slept $ms";
});
report("idle");
$worker->work(stop_if => sub { $stop }) until $stop;
usleep(($ENV{EXIT_DELAY_MS} // 0) * 1000);
