// One-shot, idempotent: initiate the replica set once, wait for a primary, then create (or
// update) the application's user. Run by the mongo-init service as
//   mongosh --host mongo1 --quiet --file /deploy/init.js
// with MONGO_ROOT_USER, MONGO_ROOT_PASSWORD, MONGO_APP_USER, MONGO_APP_PASSWORD and
// MONGO_APP_DB in its environment (passwords never on a command line).
const env = process.env;
for (const name of ["MONGO_ROOT_USER", "MONGO_ROOT_PASSWORD", "MONGO_APP_USER",
                    "MONGO_APP_PASSWORD", "MONGO_APP_DB"]) {
  if (!env[name]) { print(`mongo-init: ${name} is not set`); quit(1); }
}
const admin = db.getSiblingDB("admin");
admin.auth(env.MONGO_ROOT_USER, env.MONGO_ROOT_PASSWORD);

try {
  rs.status();
  print("mongo-init: replica set already initiated");
} catch (e) {
  if (e.codeName !== "NotYetInitialized") { throw e; }
  // mongo1 is preferred as primary: this script waits for it to be writable
  rs.initiate({_id: "rs0", members: [
    {_id: 0, host: "mongo1:27017", priority: 2}, {_id: 1, host: "mongo2:27017"},
    {_id: 2, host: "mongo3:27017"}]});
  print("mongo-init: replica set initiated");
}

for (let i = 0; !admin.runCommand({hello: 1}).isWritablePrimary; i++) {
  if (i > 120) { print("mongo-init: no primary after 60 s"); quit(1); }
  sleep(500);
}

const roles = [{role: "readWrite", db: env.MONGO_APP_DB}];
if (admin.getUser(env.MONGO_APP_USER) === null) {
  admin.createUser({user: env.MONGO_APP_USER, pwd: env.MONGO_APP_PASSWORD, roles: roles});
  print(`mongo-init: created user ${env.MONGO_APP_USER}`);
} else {
  admin.updateUser(env.MONGO_APP_USER, {pwd: env.MONGO_APP_PASSWORD, roles: roles});
  print(`mongo-init: updated user ${env.MONGO_APP_USER}`);
}
