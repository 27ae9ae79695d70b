import { spawn } from 'node:child_process';
import { requireBinary } from './process';

/**
 * A 512-byte MBR boot sector (16-bit real mode, loaded at 0x7c00) that writes `marker` to COM1 and halts:
 *   cli; cld; xor ax,ax; mov ds,ax; mov si,msg; mov dx,0x3f8
 *   next: lodsb; test al,al; jz done; out dx,al; jmp next
 *   done: hlt; jmp done
 *   msg: marker, CR, LF, 0 ... 0x55 0xAA at 510.
 */
export function bootSector(marker: string): Buffer {
  const code = [0xfa, 0xfc, 0x31, 0xc0, 0x8e, 0xd8, 0xbe, 0x00, 0x00, 0xba, 0xf8, 0x03];
  const next = code.length;
  code.push(0xac, 0x84, 0xc0, 0x74, 0x03, 0xee, 0xeb, (next - (code.length + 8)) & 0xff);
  const done = code.length;
  code.push(0xf4, 0xeb, (done - (code.length + 3)) & 0xff);
  const msgAt = 0x7c00 + code.length;
  code[7] = msgAt & 0xff;
  code[8] = msgAt >> 8;
  const sector = Buffer.alloc(512);
  Buffer.from(code).copy(sector);
  Buffer.from(`${marker}\r\n\0`, 'latin1').copy(sector, code.length);
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

/**
 * Boots qemu-system-x86_64 (TCG, 32 MiB, no display) from a raw drive at `url` (an nbd:// URL or a file) until
 * `marker` shows on its serial console; resolves with the console text, throws with its tail and qemu's errors
 * after `timeoutMs` or when qemu exits first. qemu is killed in every case.
 */
export async function bootAndWaitForMarker(url: string, marker: string, timeoutMs = 60_000): Promise<string> {
  const child = spawn(
    requireBinary('qemu-system-x86_64'),
    ['-machine', 'pc,accel=tcg', '-m', '32', '-nodefaults', '-display', 'none', '-monitor', 'none', '-serial', 'stdio', '-no-reboot',
      '-drive', `file=${url},format=raw,if=ide`],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let serial = '';
  let errors = '';
  child.stdout.on('data', (d: Buffer) => (serial += d.toString('latin1')));
  child.stderr.on('data', (d: Buffer) => (errors += d.toString('latin1')));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    const deadline = Date.now() + timeoutMs;
    while (!serial.includes(marker) && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (!serial.includes(marker)) {
      throw new Error(`no marker on the serial console; its tail: ${JSON.stringify(serial.slice(-200))}; qemu: ${errors.slice(-500)}`);
    }
    return serial;
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await exited;
  }
}
