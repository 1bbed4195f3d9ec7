"""Collection: behaviour policies trained per task by Ray actors, their lifetime buffers written
in the data format of `ray_macaw.data`."""
