<?php
// A normal page: fast, and what the heartbeat-free user sees when all is well.
header('Content-Type: text/plain');
echo "hello from php-fpm worker ", getmypid(), "\n";
