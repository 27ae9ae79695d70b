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
