// An access token from Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS), as any Node app gets one.
// It goes to stdout for the test, which only looks it up in the emulator; errors are one line.
const {GoogleAuth} = require('google-auth-library');

new GoogleAuth({scopes: ['https://www.googleapis.com/auth/cloud-platform']})
  .getAccessToken()
  .then(token => process.stdout.write(`${token}\n`))
  .catch(error => {
    console.error(`${error.name}: ${error.message}`);
    process.exit(1);
  });
