<?php
// What the tests' workers run with: opcache on, the JIT on, the test
// script cached.
$s = function_exists('opcache_get_status') ? opcache_get_status(false) : false;
echo json_encode([
    'enabled' => $s ? (bool)$s['opcache_enabled'] : false,
    'jit' => ($s && isset($s['jit'])) ? (bool)$s['jit']['on'] : false,
    'cached' => ($s && function_exists('opcache_is_script_cached')) ? opcache_is_script_cached(__DIR__ . '/stack_inc.php') : false,
]);
