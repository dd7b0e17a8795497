#!/bin/sh
printf 'Content-Type: application/json\r\n\r\n{"orders":[],"env":"%s"}\n' "$RELEASE_ENV_ID"
