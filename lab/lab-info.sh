#!/usr/bin/env bash
# Prints what runs where in the lab after `make lab`.
set -euo pipefail
echo
echo "Lab containers (molecule scenario 'stack'):"
docker ps --filter label=owner=molecule --format '  {{.Names}}\t{{.Image}}\t{{.Status}}'
echo
echo "  shell on a host:  docker exec -it lab-iris bash   |   docker exec -it lab-wazuh bash"
echo "  remove the lab:   make lab-destroy"
