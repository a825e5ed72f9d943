#!/usr/bin/perl
# Interop test client: Perl Gearman::Client 2.004 (Debian libgearman-client-perl).
# Submits jobs to one job server and prints, one JSON line per event, what the
# library reports, so the Rust tests can check job semantics through it.
#
# Usage: perl client.pl 'JSON-SPEC'
#   {"server": "127.0.0.1:4730", "exceptions": false, "mode": "do"|"set",
#    "timeout_ms": 20000,
#    "tasks": [{"function": "echo", "data": "text", "unique": "",
#               "priority": "normal"|"high"|"low", "background": false}]}
#   mode "do":  each task in turn with $client->do_task (dispatch_background if background)
#   mode "set": all tasks on one Gearman::Taskset (add_task each, then wait)
# Output (stdout, flushed per line; every line also has "t_ms" since start):
#   {"task":i,"event":"created"|"status"(numerator,denominator)|"data"(hex)|"warning"(hex)
#    |"complete"(hex)|"fail"|"exception"(hex)|"error"(message)}
#   then {"done":true}, exit 0.  Timeout: {"event":"hang"}, exit 3.  Bad spec: exit 2.
#
# What Gearman::Client 2.004 can report (findings):
# - on_status, on_data, on_warning, on_complete, on_fail, on_exception all
#   exist and fire in both modes (do_task runs a one-task Taskset).
# - "created": only in set mode (add_task returns the handle once JOB_CREATED
#   arrives) and for background tasks in do mode (dispatch_background).
# - WORK_EXCEPTION (exceptions => 1): on_exception gets the data, on_fail is
#   NOT called, the task just leaves the wait list.
# - exceptions false: gearmand 1.1.20 sends WORK_FAIL "handle\0" (trailing
#   NUL); Taskset looks up "handle\0", croaks "Got work_fail for unknown
#   handle", and wait() dies "Job server failure: ..." -> reported as "error"
#   for every unfinished task of that call.
# - A job server that cannot be reached is reported through on_fail
#   ("undefined jssock"), i.e. as "fail", not as "error".
use strict;
use warnings;
use Gearman::Client;
use JSON::PP;
use POSIX ();
use Time::HiRes ();

my $T0   = Time::HiRes::time();
my $JSON = JSON::PP->new->canonical;
$| = 1;

sub emit {
    my %ev = @_;
    $ev{t_ms} = int((Time::HiRes::time() - $T0) * 1000);
    print $JSON->encode(\%ev), "\n";
}
sub hexs { my $s = shift; return defined $s ? unpack('H*', $s) : '' }

my $spec = eval { JSON::PP->new->utf8->decode($ARGV[0] // '') };
unless (ref $spec eq 'HASH' && $spec->{server} && ref $spec->{tasks} eq 'ARRAY'
    && ($spec->{mode} // '') =~ /^(do|set)$/
    && !grep { ref $_ ne 'HASH' || !defined $_->{function} } @{ $spec->{tasks} })
{
    print STDERR "bad spec: usage: perl client.pl '{\"server\":...,\"mode\":\"do\"|\"set\",\"tasks\":[...]}'\n";
    exit 2;
}
my @tasks = @{ $spec->{tasks} };
my %ended;    # task index -> 1 once complete/fail/exception/error/created(bg)

$SIG{ALRM} = sub { emit(event => 'hang'); POSIX::_exit(3) };
Time::HiRes::alarm(($spec->{timeout_ms} // 20000) / 1000);

my $client = Gearman::Client->new(
    job_servers => [ $spec->{server} ],
    exceptions  => $spec->{exceptions} ? 1 : 0,
);

# (function, \data, options) for task $i; strings go out as UTF-8 bytes.
sub task_args {
    my $i = shift;
    my $t = $tasks[$i];
    my ($fn, $data, $uniq) = ($t->{function}, $t->{data} // '', $t->{unique} // '');
    utf8::encode($_) for $fn, $data, $uniq;
    my %o = (
        priority    => $t->{priority} || 'normal',
        on_status   => sub { emit(task => $i, event => 'status', numerator => $_[0] + 0, denominator => $_[1] + 0) },
        on_data     => sub { emit(task => $i, event => 'data',    hex => hexs(${ $_[0] })) },
        on_warning  => sub { emit(task => $i, event => 'warning', hex => hexs(${ $_[0] })) },
        on_complete => sub { $ended{$i} = 1; emit(task => $i, event => 'complete', hex => hexs(${ $_[0] })) },
        on_fail     => sub { $ended{$i} = 1; emit(task => $i, event => 'fail') },
        on_exception => sub { $ended{$i} = 1; emit(task => $i, event => 'exception', hex => hexs($_[0])) },
    );
    $o{uniq} = $uniq if length $uniq;
    $o{background} = 1 if $t->{background};
    return ($fn, \$data, \%o);
}

sub error_unended {
    my ($msg, @idx) = @_;
    chomp $msg;
    for my $i (@idx) {
        next if $ended{$i}++;
        emit(task => $i, event => 'error', message => $msg);
    }
}

if ($spec->{mode} eq 'do') {
    for my $i (0 .. $#tasks) {
        my $ok = eval {
            if ($tasks[$i]{background}) {
                my $h = $client->dispatch_background(task_args($i));
                if (defined $h) { $ended{$i} = 1; emit(task => $i, event => 'created') }
                else { error_unended('dispatch_background returned undef', $i) }
            }
            else {
                $client->do_task(task_args($i));
                error_unended('do_task returned without complete/fail/exception', $i);
            }
            1;
        };
        error_unended($@ || 'unknown error', $i) unless $ok;
    }
}
else {
    my $ts = $client->new_task_set;
    my $ok = eval {
        for my $i (0 .. $#tasks) {
            my $h = $ts->add_task(task_args($i));
            next unless defined $h && !$ended{$i};
            emit(task => $i, event => 'created');
            $ended{$i} = 1 if $tasks[$i]{background};
        }
        $ts->wait;
        error_unended('Taskset wait returned with the task unfinished', 0 .. $#tasks);
        1;
    };
    error_unended($@ || 'unknown error', 0 .. $#tasks) unless $ok;
}

Time::HiRes::alarm(0);
emit(done => JSON::PP::true);
exit 0;
