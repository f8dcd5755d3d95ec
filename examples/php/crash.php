<?php
// Ends the worker in the middle of the request, as a crash would:
// ?how=segv sends SIGSEGV to itself (needs the posix extension), else exit().
// nginx answers 502; the master respawns the worker.
if (($_GET['how'] ?? '') === 'segv' && function_exists('posix_kill')) {
    posix_kill(getmypid(), 11);
}
header('Content-Type: text/plain');
echo "exiting\n";
flush();
exit(1);
