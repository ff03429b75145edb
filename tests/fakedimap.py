"""Synthetic Pléiades DIMAP V2 deliveries for tests (structure of a DINAMIS delivery)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

DIM_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<Dimap_Document_Placeholder>
 <Metadata_Identification>
  <METADATA_FORMAT version="2.0">DIMAP</METADATA_FORMAT>
  <METADATA_PROFILE>PHR_SENSOR</METADATA_PROFILE>
 </Metadata_Identification>
 <Dataset_Identification><DATASET_NAME>{name}</DATASET_NAME></Dataset_Identification>
 <Dataset_Content><Dataset_Extent>
{vertices}
  <Center><LON>{clon}</LON><LAT>{clat}</LAT></Center>
 </Dataset_Extent></Dataset_Content>
 <Product_Information><Delivery_Identification>
  <PRODUCTION_DATE>2023-06-02T08:00:00Z</PRODUCTION_DATE><JOB_ID>{job}</JOB_ID>
 </Delivery_Identification></Product_Information>
 <Processing_Information><Product_Settings>
  <PROCESSING_LEVEL>SENSOR</PROCESSING_LEVEL><SPECTRAL_PROCESSING>P</SPECTRAL_PROCESSING>
 </Product_Settings></Processing_Information>
 <Geoposition><Geoposition_Models><Rational_Function_Model><Component>
  <COMPONENT_TITLE>RPC Model</COMPONENT_TITLE><COMPONENT_PATH href="{rpc}"/>
 </Component></Rational_Function_Model></Geoposition_Models></Geoposition>
 <Raster_Data>
  <Data_Access><DATA_FILE_FORMAT>image/tiff</DATA_FILE_FORMAT><Data_Files>
   <Data_File tile_R="1" tile_C="1"><DATA_FILE_PATH href="{image}"/></Data_File>
  </Data_Files></Data_Access>
  <Raster_Dimensions><NROWS>{rows}</NROWS><NCOLS>{cols}</NCOLS><NBANDS>1</NBANDS></Raster_Dimensions>
 </Raster_Data>
 <Geometric_Data><Use_Area>
{lgv}
 </Use_Area></Geometric_Data>
 <Dataset_Sources><Source_Identification><Strip_Source>
  <MISSION>PHR</MISSION><MISSION_INDEX>{index}</MISSION_INDEX>
  <IMAGING_DATE>{date}</IMAGING_DATE><IMAGING_TIME>{time}</IMAGING_TIME>
 </Strip_Source></Source_Identification></Dataset_Sources>
</Dimap_Document_Placeholder>
"""

LGV = """  <Located_Geometric_Values>
   <TIME>{t}</TIME><LOCATION_TYPE>{where}</LOCATION_TYPE>
   <Acquisition_Angles>
    <AZIMUTH_ANGLE>{az}</AZIMUTH_ANGLE>
    <VIEWING_ANGLE_ACROSS_TRACK>{va}</VIEWING_ANGLE_ACROSS_TRACK>
    <VIEWING_ANGLE_ALONG_TRACK>{vl}</VIEWING_ANGLE_ALONG_TRACK>
    <VIEWING_ANGLE>{v}</VIEWING_ANGLE>
    <INCIDENCE_ANGLE_ALONG_TRACK>{il}</INCIDENCE_ANGLE_ALONG_TRACK>
    <INCIDENCE_ANGLE_ACROSS_TRACK>{ia}</INCIDENCE_ANGLE_ACROSS_TRACK>
    <INCIDENCE_ANGLE>{i}</INCIDENCE_ANGLE>
   </Acquisition_Angles>
   <Solar_Incidences><SUN_AZIMUTH>160.2</SUN_AZIMUTH><SUN_ELEVATION>55.1</SUN_ELEVATION></Solar_Incidences>
  </Located_Geometric_Values>"""


def write_view(folder: Path, name: str, when: dt.datetime,
               bbox: tuple[float, float, float, float], incidence: float,
               along: float, index: str = "1A") -> Path:
    """One view: DIM_*.XML, IMG_*.TIF (with RPC tags) and RPC_*.XML; returns the DIM path."""
    import rasterio
    from rasterio.rpc import RPC

    folder.mkdir(parents=True, exist_ok=True)
    w, s, e, n = bbox
    image, rpc = f"IMG_{name}_R1C1.TIF", f"RPC_{name}.XML"
    rows = cols = 64
    rpcs = RPC(height_off=500, height_scale=500, lat_off=(s + n) / 2, lat_scale=(n - s) / 2,
               line_den_coeff=[1] + [0] * 19, line_num_coeff=[0, 0, -1] + [0] * 17,
               line_off=rows / 2, line_scale=rows / 2, long_off=(w + e) / 2,
               long_scale=(e - w) / 2, samp_den_coeff=[1] + [0] * 19,
               samp_num_coeff=[0, 1] + [0] * 18, samp_off=cols / 2, samp_scale=cols / 2)
    data = np.random.default_rng(0).integers(100, 4000, size=(rows, cols), dtype=np.uint16)
    with rasterio.open(folder / image, "w", driver="GTiff", width=cols, height=rows, count=1,
                       dtype="uint16", rpcs=rpcs) as ds:
        ds.write(data, 1)
    (folder / rpc).write_text("<Dimap_Document><Rational_Function_Model/></Dimap_Document>\n")
    corners = [(w, n, 1, 1), (e, n, cols, 1), (e, s, cols, rows), (w, s, 1, rows)]
    vertices = "\n".join(f"  <Vertex><LON>{x}</LON><LAT>{y}</LAT><COL>{c}</COL><ROW>{r}</ROW>"
                         "</Vertex>" for x, y, c, r in corners)
    lgvs = []
    for where, dtsec, k in (("Top", -2, 0.98), ("Center", 0, 1.0), ("Bottom", 2, 1.02)):
        t = (when + dt.timedelta(seconds=dtsec)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lgvs.append(LGV.format(t=t, where=where, az=180.5, va=incidence * 0.8 * k,
                               vl=along * 0.9 * k, v=incidence * 0.9 * k, il=along * k,
                               ia=incidence * 0.6 * k, i=incidence * k))
    dim = folder / f"DIM_{name}.XML"
    text = DIM_TEMPLATE.format(name=f"DS_{name}", vertices=vertices, clon=(w + e) / 2,
                               clat=(s + n) / 2, job="JOB123", rpc=rpc, image=image,
                               rows=rows, cols=cols, lgv="\n".join(lgvs), index=index,
                               date=f"{when:%Y-%m-%d}", time=f"{when:%H:%M:%S.0Z}")
    dim.write_text(text.replace("Dimap_Document_Placeholder", "Dimap_Document"))
    return dim


def write_stereo_delivery(root: Path, when: dt.datetime,
                          bbox: tuple[float, float, float, float]) -> list[Path]:
    """A DINAMIS-like stereo delivery: two views (forward, backward) in sub-folders."""
    return [
        write_view(root / "PROD_SPOT6_001" / "VOL_PHR" / "IMG_PHR1A_P_001", "PHR1A_P_F",
                   when, bbox, incidence=12.0, along=-9.5),
        write_view(root / "PROD_SPOT6_001" / "VOL_PHR" / "IMG_PHR1A_P_002", "PHR1A_P_B",
                   when + dt.timedelta(seconds=25), bbox, incidence=13.5, along=10.5),
    ]
