// Reference descriptors from face-api.js itself (tfjs, pure-JS cpu backend).
// Used once to build tests/fixtures/faceapi_reference.npz; see tools/make_faceapi_fixture.py.
//
//   npm install @vladmandic/face-api@1.7.15 @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0
//   node tools/faceapi_reference.js MODEL_DIR inputs.bin N out.json
//
// inputs.bin: N images of 150x150x3 uint8 RGB, row-major, back to back.
const fs = require('fs');
const tf = require('@tensorflow/tfjs');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

async function main() {
  const [modelDir, inputs, nStr, out] = process.argv.slice(2);
  await tf.setBackend('cpu');
  await tf.ready();
  await faceapi.nets.faceRecognitionNet.loadFromDisk(modelDir);
  const n = parseInt(nStr, 10);
  const buf = fs.readFileSync(inputs);
  const size = 150 * 150 * 3;
  const result = { backend: tf.getBackend(), tfjs: tf.version.tfjs, descriptors: [] };
  for (let i = 0; i < n; i += 1) {
    const px = Float32Array.from(buf.subarray(i * size, (i + 1) * size));
    const t = tf.tensor3d(px, [150, 150, 3], 'float32');
    const d = await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(t);
    result.descriptors.push(Array.from(d));
    t.dispose();
  }
  fs.writeFileSync(out, JSON.stringify(result));
}
main().catch((e) => { console.error(e); process.exit(1); });
