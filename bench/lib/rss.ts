// Resident memory of another process, from /proc (Linux).
import { readFileSync } from 'node:fs';

/** VmRSS of `pid` in MiB, or null where /proc is not available or the process is gone. */
export function rssMiB(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const kB = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kB === undefined ? null : Number(kB) / 1024;
  } catch {
    return null;
  }
}
