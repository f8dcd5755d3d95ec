<?php
// fpmguard's opcache probe. fpmguard runs this file inside php-fpm over
// FastCGI, because the opcache lives in the php-fpm master's shared memory
// and nothing outside PHP can read it.
//
// It only reads: the status (without the per-script list) and the
// configuration directives. It holds no code that changes the cache, on
// purpose. Anyone who can connect to a pool's socket can run this file with
// any FastCGI parameters, and the pool's own PHP code can include it: a
// reset here would be a reset button for every pool user, and would let
// them past opcache.restrict_api, which trusts this file's directory.
// fpmguard resets and invalidates through a script of its own that exists
// only for the one call (see fpmguard-opcache-action.php).
//
// It answers only with the FastCGI parameter FPMGUARD_OPCACHE=status. nginx
// passes HTTP headers to PHP only as HTTP_* parameters, so no HTTP client
// can set it through nginx: a copy left in a web root answers 404.
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
    'action' => 'status',
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

if ($action !== 'status') {
    $out['error'] = 'this script only reads the opcache (FPMGUARD_OPCACHE=status); fpmguard resets and invalidates through a script of its own';
    fpmguard_answer($out, 403);
    return;
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

$status = @opcache_get_status(false);
$config = @opcache_get_configuration();
// The blacklist names files of the application: fpmguard reads only the
// directives.
if (is_array($config)) {
    unset($config['blacklist']);
}
$out['status'] = $status === false ? null : $status;
$out['configuration'] = $config === false ? null : $config;
// The size the master gave the shared memory at its start (php.ini or -d;
// false: PHP's default). A pool's php_admin_value cannot change it, yet
// PHP computes used_memory from the pool's own value.
$out['cfg_memory_consumption'] = get_cfg_var('opcache.memory_consumption');
// The size the master gave the shared memory at its start (php.ini or -d;
// false: PHP's default). A pool's php_admin_value cannot change it, yet
// PHP computes used_memory from the pool's own value.
$out['cfg_memory_consumption'] = get_cfg_var('opcache.memory_consumption');
// A disabled opcache has no status to give; that is not an error.
if ($status === false && ini_get('opcache.enable')) {
    $err = error_get_last();
    $out['error'] = 'opcache_get_status() failed' . ($err ? ': ' . $err['message'] : '');
}
fpmguard_answer($out);
