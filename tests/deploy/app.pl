# A tiny HTTP app for the compose and sidecar tests: answers every request with "deploy-test-app" and the identity
# header Portcullis set, if any.
use strict; use warnings; use IO::Socket::INET;
my ($port, $bind) = (8000, '0.0.0.0');
for (my $i = 0; $i < @ARGV; $i++) {
  $port = $ARGV[$i + 1] if $ARGV[$i] eq '--port';
  $bind = $ARGV[$i + 1] if $ARGV[$i] eq '--bind';
}
my $srv = IO::Socket::INET->new(LocalAddr => $bind, LocalPort => $port, Listen => 16, ReuseAddr => 1) or die "listen: $!";
$SIG{TERM} = sub { exit 0 }; $| = 1; print "app listening on $port\n";
while (my $c = $srv->accept) {
  my ($user, $line) = ('-', '');
  while (defined($line = <$c>)) { last if $line =~ /^\r?\n$/; $user = $1 if $line =~ /^x-forwarded-user:\s*(\S+)/i; }
  my $body = "deploy-test-app user=$user\n";
  print $c "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " . length($body) . "\r\nConnection: close\r\n\r\n$body";
  close $c;
}
