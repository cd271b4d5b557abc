# hash_churn.pl — Perl hash and string churn with deterministic output.
use strict;
use warnings;

my $seed = 42;
sub rnd { $seed = ($seed * 1103515245 + 12345) % 2147483648; return $seed; }

my %h;
for my $i (1 .. 300000) {
	my $k = "key" . (rnd() % 40000);
	if ($i % 5 == 0) { delete $h{$k}; }
	else { $h{$k} = ("x" x (rnd() % 300)) . $i; }
}
my $total = 0;
$total += length($h{$_}) for keys %h;
print "keys ", scalar(keys %h), " bytes $total\n";

my @list = map { [rnd() % 1000, "s" . rnd()] } 1 .. 100000;
@list = sort { $a->[0] <=> $b->[0] or $a->[1] cmp $b->[1] } @list;
print "first $list[0][0] $list[0][1] last $list[-1][0] $list[-1][1]\n";

my %count;
my $text = join(" ", map { "w" . (rnd() % 2000) } 1 .. 200000);
$count{$_}++ for split / /, $text;
my @top = (sort { $count{$b} <=> $count{$a} or $a cmp $b } keys %count)[0 .. 4];
print "top @top\n";
my %nested;
for my $i (1 .. 50000) { push @{ $nested{ $i % 97 }{ $i % 13 } }, $i; }
my $n = 0;
for my $a (keys %nested) { for my $b (keys %{ $nested{$a} }) { $n += @{ $nested{$a}{$b} }; } }
print "nested $n\n";
