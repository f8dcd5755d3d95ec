// fpmguard's status page: it fetches the live part again from ./fragment
// every refresh and puts it in place of the old one, and it asks before a
// kill. The CSP allows no inline script; this file is all there is.
//
// The fragment is rendered by the server with the page's own template,
// which escapes every value; it is parsed by DOMParser, which runs no
// script. Everything else this script writes is text (textContent).
'use strict';
(function () {
	document.documentElement.classList.add('js');

	const refreshStatus = document.getElementById('refresh-status');
	const killStatus = document.getElementById('kill-status');
	const dialog = document.getElementById('kill-dialog');
	const question = document.getElementById('kill-question');
	let lastOK = new Date();
	let failing = false;
	let timer = 0;
	let asked = null; // the kill the dialog asks about: {pool, pid}

	function live() {
		return document.getElementById('live');
	}

	function say(el, text) {
		el.textContent = text;
		el.hidden = text === '';
	}

	function every() {
		const ms = Number(live().dataset.refreshMs);
		return ms >= 500 ? ms : 1000;
	}

	// Nothing is swapped while nobody looks, while the kill question is
	// open, or while text of the page is selected (to be copied).
	function paused() {
		if (document.hidden || dialog.open) {
			return true;
		}
		const sel = document.getSelection();
		return sel !== null && !sel.isCollapsed && live().contains(sel.anchorNode);
	}

	async function refresh() {
		clearTimeout(timer);
		if (!paused()) {
			try {
				const r = await fetch('fragment', { cache: 'no-store', credentials: 'same-origin', headers: { Accept: 'text/html' } });
				if (!r.ok) {
					throw new Error('HTTP ' + r.status + ' ' + r.statusText);
				}
				const doc = new DOMParser().parseFromString(await r.text(), 'text/html');
				const next = doc.getElementById('live');
				if (next === null) {
					throw new Error('the answer holds no status');
				}
				live().replaceWith(document.adoptNode(next));
				if (next.dataset.title) {
					document.title = next.dataset.title;
				}
				lastOK = new Date();
				if (failing) {
					failing = false;
					say(refreshStatus, '');
				}
			} catch (e) {
				failing = true;
				say(refreshStatus, 'Not updated since ' + lastOK.toLocaleTimeString() + ': ' + e.message);
			}
		}
		timer = setTimeout(refresh, every());
	}

	document.addEventListener('visibilitychange', () => {
		if (!document.hidden) {
			refresh();
		}
	});

	// A kill button's row says which worker: its cells' text, read as
	// text.
	document.addEventListener('click', (ev) => {
		const b = ev.target instanceof Element ? ev.target.closest('button.kill') : null;
		if (b === null) {
			return;
		}
		const row = b.closest('tr');
		const cell = (label) => row.querySelector('[data-label="' + label + '"]').textContent;
		asked = { pool: cell('Pool'), pid: Number(cell('PID')) };
		question.textContent = 'Kill worker ' + asked.pid + ' of pool ' + asked.pool + ' (' + cell('Method') + ' ' + cell('URI') +
			' for ' + cell('Age') + ')? It gets SIGTERM, through the same checks as --kill-hung-after; its master starts another.';
		dialog.returnValue = '';
		dialog.showModal();
	});

	dialog.addEventListener('close', async () => {
		const k = asked;
		asked = null;
		if (dialog.returnValue !== 'kill' || k === null) {
			return;
		}
		killStatus.classList.remove('failed');
		say(killStatus, 'Asking to kill worker ' + k.pid + ' of pool ' + k.pool + '…');
		try {
			// JSON, same origin: /kill refuses any other content type and
			// any request another site's page makes.
			const r = await fetch('kill', {
				method: 'POST',
				credentials: 'same-origin',
				headers: { 'Content-Type': 'application/json' },
				body: JSON.stringify(k),
			});
			const text = await r.text();
			let msg = text.trim();
			try {
				msg = JSON.parse(text).message || msg;
			} catch (_) {
				// a refusal in plain text
			}
			killStatus.classList.toggle('failed', !r.ok);
			say(killStatus, new Date().toLocaleTimeString() + ': ' + (r.ok ? '' : 'Not killed: ') + msg);
		} catch (e) {
			killStatus.classList.add('failed');
			say(killStatus, 'Kill not sent: ' + e.message);
		}
		refresh();
	});

	timer = setTimeout(refresh, every());
})();
