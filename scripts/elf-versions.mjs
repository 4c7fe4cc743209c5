// The symbol versions an ELF shared object needs from each library (its .gnu.version_r section), read
// without binutils: `node scripts/elf-versions.mjs FILE` prints them, and the install test and
// test/package.test.ts check the prebuilt addon's glibc floor with it.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const SHT_GNU_VERNEED = 0x6ffffffe;

/** [{ file: 'libc.so.6', version: 'GLIBC_2.17' }, ...] of a 64-bit little-endian ELF file. */
export function neededVersions(path) {
  const b = readFileSync(path);
  if (b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2 || b[5] !== 1) throw new Error(`${path} is not a 64-bit little-endian ELF file`);
  const shoff = Number(b.readBigUInt64LE(0x28)),
    shentsize = b.readUInt16LE(0x3a),
    shnum = b.readUInt16LE(0x3c);
  const section = (i) => {
    const o = shoff + i * shentsize;
    return { type: b.readUInt32LE(o + 4), offset: Number(b.readBigUInt64LE(o + 0x18)), link: b.readUInt32LE(o + 0x28), info: b.readUInt32LE(o + 0x2c) };
  };
  const out = [];
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    if (s.type !== SHT_GNU_VERNEED) continue;
    const strtab = section(s.link).offset;
    const str = (off) => b.toString('latin1', strtab + off, b.indexOf(0, strtab + off));
    let need = s.offset;
    for (let n = 0; n < s.info; n++) {
      const file = str(b.readUInt32LE(need + 4));
      let aux = need + b.readUInt32LE(need + 8);
      for (let a = 0; a < b.readUInt16LE(need + 2); a++) {
        out.push({ file, version: str(b.readUInt32LE(aux + 8)) });
        aux += b.readUInt32LE(aux + 12);
      }
      need += b.readUInt32LE(need + 12);
    }
  }
  return out;
}

/** The highest version with a prefix ('GLIBC_'), as [major, minor, patch], or null. */
export function highest(versions, prefix) {
  const parsed = versions.filter((v) => v.version.startsWith(prefix)).map((v) => v.version.slice(prefix.length).split('.').map(Number));
  parsed.sort((x, y) => x[0] - y[0] || (x[1] ?? 0) - (y[1] ?? 0) || (x[2] ?? 0) - (y[2] ?? 0));
  return parsed.at(-1) ?? null;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const v = neededVersions(process.argv[2]);
  for (const { file, version } of v) console.log(`${file} ${version}`);
  console.log(`highest GLIBC_${(highest(v, 'GLIBC_') ?? []).join('.')}; GLIBCXX: ${v.some((x) => x.version.startsWith('GLIBCXX_')) ? 'needed' : 'none'}`);
}
