"""The local demos (`make demo`, `make census-demo`) over the services `services.sh` starts."""
