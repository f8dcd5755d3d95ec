<?php
// fpmguard's opcache action: one opcache_reset() or opcache_invalidate()
// call, written by fpmguard for one FastCGI request and removed after it.
//
// Why a file for one call: anything a pool's socket can reach, every pool
// user can reach (they connect to the socket and set any FastCGI parameter,
// or include the file from their own PHP). This file holds its request
// (below, written by fpmguard) and takes nothing from the caller. It lives
// under a random name, in a directory only root (or fpmguard's user) may
// write and nobody else may list, and it is gone when fpmguard's call ends.
// There is no secret for PHP to keep: a secret this script could read, the
// pool user's own PHP could read too, as the same user in the same process.
//
// The only name it can be found by is the one php-fpm's status page shows
// while the call runs; replayed in that moment, it does again what fpmguard
// is doing anyway.

$request = json_decode(base64_decode('@REQUEST@'), true);

if (!isset($_SERVER['FPMGUARD_OPCACHE']) || !is_array($request) || $_SERVER['FPMGUARD_OPCACHE'] !== $request['action']) {
    http_response_code(404);
    header('Content-Type: text/plain');
    echo "File not found.\n";
    return;
}
header('Content-Type: application/json');
header('Cache-Control: no-store');

$out = [
    'schema' => 1,
    'action' => $request['action'],
    'php_version' => PHP_VERSION,
    'sapi' => PHP_SAPI,
    'pid' => getmypid(),
    'time' => microtime(true),
    'loaded' => extension_loaded('Zend OPcache'),
    'restricted' => false,
    'error' => null,
];

function fpmguard_answer($out)
{
    // This file may have been cached (opcache.file_update_protection=0):
    // drop it, so that its path compiles nothing once the file is gone.
    if (function_exists('opcache_invalidate')) {
        @opcache_invalidate(__FILE__, true);
    }
    echo json_encode($out, JSON_UNESCAPED_SLASHES | JSON_PARTIAL_OUTPUT_ON_ERROR | JSON_INVALID_UTF8_SUBSTITUTE), "\n";
}

if (!$out['loaded'] || !function_exists('opcache_reset')) {
    $out['error'] = 'the Zend OPcache extension is not loaded in this php-fpm';
    fpmguard_answer($out);
    return;
}

$restrict = (string) ini_get('opcache.restrict_api');
if ($restrict !== '' && strpos(__FILE__, $restrict) !== 0) {
    $out['restricted'] = true;
    $out['error'] = 'opcache.restrict_api=' . $restrict . ' refuses scripts outside it; give fpmguard an opcache directory under it';
    fpmguard_answer($out);
    return;
}

if ($request['action'] === 'reset') {
    $out['result'] = opcache_reset();
} elseif ($request['action'] === 'invalidate') {
    $paths = isset($request['paths']) && is_array($request['paths']) ? $request['paths'] : [];
    if (isset($request['glob']) && $request['glob'] !== '') {
        $matches = glob($request['glob'], GLOB_NOSORT);
        if ($matches !== false) {
            $paths = array_merge($paths, $matches);
        }
    }
    $done = [];
    foreach ($paths as $p) {
        $done[$p] = opcache_invalidate($p, true);
    }
    $out['result'] = $done;
}

$status = @opcache_get_status(false);
$out['status'] = $status === false ? null : $status;
fpmguard_answer($out);
