<?php
// fpmguard's opcache probe. fpmguard runs this file inside php-fpm over
// FastCGI, because the opcache lives in the php-fpm master's shared memory
// and nothing outside PHP can read it.
//
// It acts only when the FastCGI parameter FPMGUARD_OPCACHE is set. nginx
// passes HTTP headers to PHP only as HTTP_* parameters, so no HTTP client can
// set this one through nginx. A copy left in a web root by mistake answers
// 404 and does nothing.
//
// FPMGUARD_OPCACHE=status      the status (without the per-script list) and the configuration
// FPMGUARD_OPCACHE=reset       opcache_reset(), then the status
// FPMGUARD_OPCACHE=invalidate  opcache_invalidate(path, true) for each line of FPMGUARD_PATHS
//                              and each match of the glob in FPMGUARD_GLOB
//
// The answer is JSON with "schema": 1.

$action = isset($_SERVER['FPMGUARD_OPCACHE']) ? $_SERVER['FPMGUARD_OPCACHE'] : null;
if ($action === null) {
    http_response_code(404);
    header('Content-Type: text/plain');
    echo "File not found.\n";
    return;
}
header('Content-Type: application/json');
header('Cache-Control: no-store');

$out = [
    'schema' => 1,
    'action' => $action,
    'php_version' => PHP_VERSION,
    'sapi' => PHP_SAPI,
    'pid' => getmypid(),
    'time' => microtime(true),
    'loaded' => extension_loaded('Zend OPcache'),
    'restricted' => false,
    'error' => null,
];

function fpmguard_answer($out, $code = 200)
{
    http_response_code($code);
    echo json_encode($out, JSON_UNESCAPED_SLASHES | JSON_PARTIAL_OUTPUT_ON_ERROR | JSON_INVALID_UTF8_SUBSTITUTE), "\n";
}

if (!$out['loaded'] || !function_exists('opcache_get_status')) {
    $out['error'] = 'the Zend OPcache extension is not loaded in this php-fpm';
    fpmguard_answer($out);
    return;
}

// opcache.restrict_api limits the API to scripts under a path prefix.
$restrict = (string) ini_get('opcache.restrict_api');
if ($restrict !== '' && strpos(__FILE__, $restrict) !== 0) {
    $out['restricted'] = true;
    $out['error'] = 'opcache.restrict_api=' . $restrict . ' refuses scripts outside it; place this script under it or clear the directive';
    fpmguard_answer($out);
    return;
}

if ($action === 'reset') {
    $out['result'] = opcache_reset();
} elseif ($action === 'invalidate') {
    $paths = [];
    foreach (explode("\n", isset($_SERVER['FPMGUARD_PATHS']) ? $_SERVER['FPMGUARD_PATHS'] : '') as $p) {
        if ($p !== '') {
            $paths[] = $p;
        }
    }
    if (isset($_SERVER['FPMGUARD_GLOB']) && $_SERVER['FPMGUARD_GLOB'] !== '') {
        $matches = glob($_SERVER['FPMGUARD_GLOB'], GLOB_NOSORT);
        if ($matches !== false) {
            $paths = array_merge($paths, $matches);
        }
    }
    $done = [];
    foreach ($paths as $p) {
        $done[$p] = opcache_invalidate($p, true);
    }
    $out['result'] = $done;
} elseif ($action !== 'status') {
    $out['error'] = 'unknown action ' . $action . '; use status, reset or invalidate';
    fpmguard_answer($out, 400);
    return;
}

$status = @opcache_get_status(false);
$config = @opcache_get_configuration();
$out['status'] = $status === false ? null : $status;
$out['configuration'] = $config === false ? null : $config;
// A disabled opcache has no status to give; that is not an error.
if ($status === false && $out['error'] === null && ini_get('opcache.enable')) {
    $err = error_get_last();
    $out['error'] = 'opcache_get_status() failed' . ($err ? ': ' . $err['message'] : '');
}
fpmguard_answer($out);
