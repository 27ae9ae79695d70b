import { BrowseWorkerError, ThreadedFileBrowser } from './threaded-browser';

/** A worker speaking the browse protocol in plain JavaScript: `ready`, then `onRequest` for every request. */
function entry(onRequest: string, ready = "{ ready: true, volumes: [] }") {
  const code = `
    const { parentPort } = require('node:worker_threads');
    parentPort.postMessage(${ready});
    parentPort.on('message', (m) => { ${onRequest} });
  `;
  return { file: code, options: { eval: true } };
}

const data = { repository: { location: '/nowhere' }, pointId: 'p', diskKeys: [] };

describe('ThreadedFileBrowser', () => {
  it('stops a worker that answers nothing, even pings, and fails its requests', async () => {
    const browser = await ThreadedFileBrowser.open(data, { hangMs: 300, label: 'point p', entry: entry('if (m.op !== "ping") for (;;) {}') });
    const started = Date.now();
    const failure = await browser.stat(0, '/').catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(BrowseWorkerError);
    expect((failure as Error).message).toMatch(/file browsing thread of point p did not answer for 0.3 s and was stopped/);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(browser.failure).toBe(failure);
    await expect(browser.readlink(0, '/x')).rejects.toBe(failure);
    await browser.close();
  });

  it('keeps a slow worker that still answers pings', async () => {
    const slow = 'if (m.op === "ping") parentPort.postMessage({ id: m.id, ok: true, value: null }); else setTimeout(() => parentPort.postMessage({ id: m.id, ok: true, value: { path: "/x", target: "y" } }), 900);';
    const browser = await ThreadedFileBrowser.open(data, { hangMs: 300, entry: entry(slow) });
    await expect(browser.readlink(0, '/x')).resolves.toEqual({ path: '/x', target: 'y' });
    expect(browser.failure).toBeNull();
    await browser.close();
  });

  it('rejects opening with the error the worker sent, or a clear one when it dies', async () => {
    const refused = entry('', "{ ready: false, error: { kind: 'vmkeep', name: 'VmkeepError', message: 'restore point gone', code: 'not_found' } }");
    await expect(ThreadedFileBrowser.open(data, { entry: refused })).rejects.toMatchObject({ code: 'not_found', message: 'restore point gone' });
    const dies = { file: 'process.exit(3)', options: { eval: true } };
    await expect(ThreadedFileBrowser.open(data, { label: 'point p', entry: dies })).rejects.toThrow(/file browsing thread of point p stopped while opening \(exit code 3\)/);
    const stuck = { file: 'for (;;) {}', options: { eval: true } };
    await expect(ThreadedFileBrowser.open(data, { label: 'point p', hangMs: 300, entry: stuck })).rejects.toThrow(/did not answer for 0.3 s while opening/);
  });

  it('closes by asking the worker, then ends the thread', async () => {
    const browser = await ThreadedFileBrowser.open(data, { entry: entry('if (m.op === "close") parentPort.postMessage({ id: m.id, ok: true, value: null });') });
    const exit = new Promise((r) => browser.workerForTests.once('exit', r));
    await browser.close();
    await exit;
    await expect(browser.stat(0, '/')).rejects.toThrow(/was closed/);
  });
});
