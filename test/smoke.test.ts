import t from "tap";
import { decodeJwt, signJwt, newRsaKey, verifyJwtSignature } from "../src/emulator/jose.js";
t.test("jose roundtrip", async (t) => {
  const k = newRsaKey();
  const j = decodeJwt(signJwt({ a: 1 }, k, "k1"))!;
  t.equal(j.payload.a, 1);
  t.ok(verifyJwtSignature(j, k));
});
