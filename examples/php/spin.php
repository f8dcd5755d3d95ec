<?php
// Spins on the CPU like an infinite loop. ?s=SECONDS (default 60)
$s = isset($_GET['s']) ? (int) $_GET['s'] : 60;
$end = microtime(true) + max(0, min($s, 3600));
$x = 0;
while (microtime(true) < $end) {
    $x++;
}
echo "spun $x times\n";
