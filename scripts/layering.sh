#!/usr/bin/env bash
# The HTTP boundary (ARCHITECTURE.md, "Layering"): which files under src/ may
# name the HTTP server stack and the layers above them. Prints every
# violation as file:line and exits 1 if there is any.
#
#   tier                          may not name
#   main.rs, lib.rs, app.rs       (anything goes: wiring)
#   http/**                       crate::app
#   serve.rs, serve/**            crate::app, crate::http, crate::state, AppState
#   state.rs                      the server stack, crate::app, crate::http
#   everything else               the server stack, crate::app, crate::http, crate::state, AppState
#
# "The server stack" is the crates axum, hyper, hyper_util, tower, tower_http.
# Comments are ignored (not string literals); code and tests alike are checked. Paths are matched as
# written from `crate::` (also inside `use crate::{…}` groups).
set -euo pipefail
cd "$(dirname "$0")/.."

find src -name '*.rs' | sort | perl -e '
use strict;
use warnings;
my $stack = qr/\b(?:axum|hyper|hyper_util|tower|tower_http)::|\buse\s+(?:axum|hyper|hyper_util|tower|tower_http)\b/;
my $bad = 0;
while (my $file = <STDIN>) {
    chomp $file;
    my $rel = $file =~ s{^src/}{}r;
    next if $rel =~ m{^(?:main|lib|app)\.rs$};
    my (@up, $no_stack, $no_appstate);
    if ($rel =~ m{^http/}) {
        @up = qw(app);
    } elsif ($rel =~ m{^serve(?:\.rs|/)}) {
        @up = qw(app http state);
        $no_appstate = 1;
    } elsif ($rel eq "state.rs") {
        @up = qw(app http);
        $no_stack = 1;
    } else {
        @up = qw(app http state);
        ($no_stack, $no_appstate) = (1, 1);
    }
    my $up = join "|", @up;
    open my $fh, "<", $file or die "$file: $!";
    my $text = do { local $/; <$fh> };
    close $fh;
    # Blank out comments (line and block, not inside string or char literals),
    # keeping line numbers.
    $text =~ s{("(?:\\.|[^"\\])*")|(\x27(?:\\.|[^\x27\\])\x27)|(//[^\n]*)|(/\*.*?\*/)}{
        defined $3 ? "" : defined $4 ? ($4 =~ s/[^\n]//gr) : $&
    }gse;
    my @lines = split /\n/, $text, -1;
    for my $i (0 .. $#lines) {
        my $l = $lines[$i];
        my $why;
        $why = "the HTTP server stack (axum/hyper/tower)" if $no_stack && $l =~ $stack;
        $why = "crate::$1" if !$why && $l =~ /\bcrate::($up)\b/;
        $why = "AppState" if !$why && $no_appstate && $l =~ /\bAppState\b/;
        if ($why) {
            print "src/$rel:", $i + 1, ": names $why: ", ($l =~ s/^\s+//r), "\n";
            $bad = 1;
        }
    }
    # `use crate::{app, …}` and friends: top-level names of a crate:: group.
    while ($text =~ /\bcrate::(\{((?:[^{}]++|(?1))*)\})/g) {
        my ($group, $at) = ($2, $-[0]);
        (my $top = $group) =~ s/(\{(?:[^{}]++|(?1))*\})//g;
        for my $name (map { s/^\s+|\s+$//gr } split /,/, $top) {
            next unless $name =~ /^($up)\b/;
            my $line = 1 + (substr($text, 0, $at) =~ tr/\n//);
            print "src/$rel:$line: names crate::$1 in a use group\n";
            $bad = 1;
        }
    }
}
if ($bad) {
    print STDERR "layering: the files above reach across the HTTP boundary (see ARCHITECTURE.md, Layering)\n";
    exit 1;
}
'
echo "layering: ok"
