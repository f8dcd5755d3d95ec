<?php
// Fills the opcache with generated scripts, to show a full cache.
// ?n=COUNT (default 500). The scripts go into the directory the pool names
// in env[FPMGUARD_DEMO_DIR] (the demo's own), never a fixed name in /tmp.
$n = isset($_GET['n']) ? (int) $_GET['n'] : 500;
$dir = getenv('FPMGUARD_DEMO_DIR');
if ($dir === false || $dir === '' || !is_dir($dir) || !is_writable($dir)) {
    http_response_code(500);
    exit("set env[FPMGUARD_DEMO_DIR] in the pool to a directory the pool's user can write\n");
}
$dir .= '/generated';
if (!is_dir($dir) && !mkdir($dir, 0700)) {
    http_response_code(500);
    exit("cannot create $dir\n");
}
$count = max(0, min($n, 100000));
for ($i = 0; $i < $count; $i++) {
    $f = "$dir/s$i.php";
    if (!file_exists($f)) {
        file_put_contents($f, "<?php return $i;");
        touch($f, time() - 10); // older than opcache.file_update_protection
    }
    include $f;
}
echo "included $count scripts\n";
