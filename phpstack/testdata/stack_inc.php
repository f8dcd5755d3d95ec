<?php
// Included by stack.php: the innermost frames of every test stack. The
// "// @name" markers name the lines the tests expect frames at.

function wait_db(string $mode, int $ms)
{
    if ($mode === 'spin') {
        $end = microtime(true) + $ms / 1000;
        $x = 0;
        while (microtime(true) < $end) { $x++; } // @spin
        return $x;
    }
    usleep($ms * 1000); // @sleep
    return 0;
}

class Repo
{
    public static function run(string $mode, int $ms)
    {
        return (new Repo())->find($mode, $ms); // @run
    }

    public function find(string $mode, int $ms)
    {
        $f = function () use ($mode, $ms) { // @closure-start
            return wait_db($mode, $ms); // @closure
        };
        return $f(); // @find
    }
}

function down(int $n, int $ms)
{
    if ($n === 0) {
        usleep($ms * 1000); // @bottom
        return;
    }
    down($n - 1, $ms); // @down
}

function handle(string $mode, int $ms)
{
    if ($mode === 'deep') {
        down(100, $ms); // @deep
        return;
    }
    if ($mode === 'fiber') {
        $fiber = new Fiber(function () use ($ms) { // @fiber-start
            wait_db('sleep', $ms); // @fiber
        });
        $fiber->start(); // @fiber-call
        return;
    }
    if ($mode === 'eval') {
        eval('wait_db("sleep", ' . $ms . ');'); // @eval
        return;
    }
    return Repo::run($mode, $ms); // @handle
}

handle($_GET['mode'] ?? 'sleep', (int)($_GET['ms'] ?? 60000)); // @main
echo "done\n";
