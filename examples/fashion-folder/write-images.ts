import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import sharp from 'sharp';

/**
 * Writes the first N Fashion-MNIST training images (Debian's dataset-fashion-mnist) as PNG files in one folder per
 * class: `npm run images [-- <folder> <count>]`. A stand-in for your own photos.
 */
const CLASSES = ['t-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle-boot'];
const SOURCE = process.env.FASHION_MNIST_DIR ?? '/usr/share/datasets/fashion-mnist';

async function idx(name: string): Promise<Buffer> {
  const file = path.join(SOURCE, name);
  const bytes = await readFile(file).catch(() => readFile(`${file}.gz`).then((gz) => gunzipSync(gz)));
  return bytes;
}

const [folder = 'data/images', countText = '2000'] = process.argv.slice(2);
const count = Number(countText);
const images = await idx('train-images-idx3-ubyte');
const labels = await idx('train-labels-idx1-ubyte');
for (let i = 0; i < count; i++) {
  const dir = path.join(folder, CLASSES[labels[8 + i]!]!);
  await mkdir(dir, { recursive: true });
  const pixels = images.subarray(16 + i * 784, 16 + (i + 1) * 784);
  const png = await sharp(pixels, { raw: { width: 28, height: 28, channels: 1 } })
    .png()
    .toBuffer();
  await writeFile(path.join(dir, `${String(i).padStart(5, '0')}.png`), png);
}
console.log(`wrote ${count} images into ${folder}/<class>/`);
