// Entry point of the function (func.yaml: `entrypoint: node func.js`).
import fdk from "@fnproject/fdk";
import { OciGoogleCredentials } from "oci2gcp";
import { createHandler } from "./handler.js";

// One set of credentials per function container, made on the first call and
// reused while the container stays warm: the Google token is cached and renewed
// in-process. Inside OCI Functions fromEnvironment() signs with the resource
// principal; the rest of its settings come from the function's configuration
// (OCI_IAM_DOMAIN_URL, GCP_AUDIENCE, OCI2GCP_SERVICE_ACCOUNTS, GOOGLE_CLOUD_PROJECT).
let credentials;

fdk.handle(createHandler({ credentials: () => (credentials ??= OciGoogleCredentials.fromEnvironment()) }));
