// Sizes as the page shows them (files.js, upload.js, dirs.js).

const MiB = 1024 * 1024;

/** `n` bytes as text: "1 byte", "512 bytes", "1.5 KiB", "20.0 MiB", "4.00 GiB"; '' for null. */
export function formatSize(n) {
  if (n == null) return '';
  if (n === 1) return '1 byte';
  if (n < 1024) return `${n} bytes`;
  if (n < MiB) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 * MiB) return `${(n / MiB).toFixed(1)} MiB`;
  return `${(n / 1024 / MiB).toFixed(2)} GiB`;
}
