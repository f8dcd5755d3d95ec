<?php
// The request script of phpstack's tests: its stack is known by line.
// ?mode=sleep|spin|deep|eval|fiber, ?ms= how long the innermost frame waits.
require_once __DIR__ . '/stack_inc.php'; // @require
