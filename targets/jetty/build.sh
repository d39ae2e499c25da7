#!/bin/sh
# Build the Jetty target: compile, and copy the runtime classpath to target/lib, so that
# target.toml starts it with `java -cp target/classes:target/lib/*` (never through Maven).
# Offline first (`mvn -o`), so a local repository (~/.m2) that already holds every artifact
# costs no network round trip; online only when something is missing there.
set -u
goals="-B -q -Dstyle.color=never compile dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=target/lib"
rm -rf target/lib
if mvn -o $goals > /dev/null 2>&1; then
    exit 0
fi
echo "jetty target: the local Maven repository lacks artifacts; building online" >&2
exec mvn $goals
